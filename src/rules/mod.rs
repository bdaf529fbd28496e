//! Pure rules: functions of (request, stored metadata, origin response, configuration, now).
//! No IO, no clock reads, no platform types; everything here is tested natively.

pub mod conditional;
pub mod config;
pub mod downstream;
pub mod freshness;
pub mod invalidation;
pub mod key;
pub mod meta;
pub mod policy;
pub mod state;
