//! Every way a webhook call can fail, with its status and a message that says what to fix.
//!
//! The caller is usually a person configuring a CMS, reading the answer in a delivery log: each
//! message names the field, value or limit at fault rather than just "bad request".

use super::{MAX_BODY_BYTES, MAX_ITEMS};
use crate::http::Response;
use std::fmt;

/// Values quoted in messages are cut to this many characters.
const QUOTE_CHARS: usize = 100;

/// Why a webhook call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// `REVALIDATE_SECRET` is empty, so every call is refused (401).
    SecretNotConfigured,
    /// No credential of any accepted kind was sent (401).
    MissingCredentials,
    /// Credentials were sent but none was valid; one reason per credential tried (401).
    InvalidCredentials(Vec<String>),
    /// The method is not POST (405); holds the method received.
    MethodNotAllowed(String),
    /// The body is over [`MAX_BODY_BYTES`] (413); holds its size.
    PayloadTooLarge(usize),
    /// The request URL could not be parsed (400).
    InvalidUrl,
    /// The body is not JSON (400); holds the parser's message.
    InvalidJson(String),
    /// The body is JSON but not an object, and no mapping matched it (400); holds its JSON type.
    NotAnObject(&'static str),
    /// A field has the wrong JSON type (400).
    WrongType {
        /// The field, e.g. `tags` or `tags[2]`.
        field: String,
        /// What it should be, e.g. `an array of strings`.
        expected: &'static str,
    },
    /// A value has the right type but is not acceptable (400).
    InvalidValue {
        /// Where the value came from, e.g. `path` or `query parameter tag`.
        field: String,
        /// The value (shortened when quoted).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Top-level body fields that are neither edge-isr fields nor matched by a mapping (400).
    UnknownFields {
        /// The unknown field names.
        fields: Vec<String>,
        /// How many `WEBHOOK_MAPPINGS` rules are configured (none of them matched).
        mappings: usize,
    },
    /// Query parameters the webhook does not know (400).
    UnknownQueryParameters(Vec<String>),
    /// Query parameters that choose what to invalidate on a request whose signature covers
    /// only the body (400): they could have been added by whoever captured the delivery.
    UnsignedQuery {
        /// The query parameters found (`tag`, `path`, `prefix`, `mode`).
        names: Vec<String>,
        /// The signature's header.
        signature: &'static str,
    },
    /// The request names nothing to invalidate (400); holds a hint on why.
    NothingToInvalidate(String),
    /// More than [`MAX_ITEMS`] distinct entries (400); holds how many were sent.
    TooManyItems(usize),
}

impl WebhookError {
    /// The HTTP status of the answer: 401, 405, 413 or 400.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::SecretNotConfigured | WebhookError::MissingCredentials | WebhookError::InvalidCredentials(_) => 401,
            WebhookError::MethodNotAllowed(_) => 405,
            WebhookError::PayloadTooLarge(_) => 413,
            _ => 400,
        }
    }

    /// A human message saying what is wrong and how to fix it.
    pub fn message(&self) -> String {
        match self {
            WebhookError::SecretNotConfigured => "REVALIDATE_SECRET is not configured, so the revalidation webhook refuses every request; \
                 set it with `wrangler secret put REVALIDATE_SECRET`"
                .to_string(),
            WebhookError::MissingCredentials => "missing credentials: send the secret as `Authorization: Bearer <secret>`, \
                 an `x-isr-secret` header or a `?secret=` query parameter, or sign the body \
                 (`x-isr-signature`, Sanity's `sanity-webhook-signature` or Contentful's `x-contentful-signature`)"
                .to_string(),
            WebhookError::InvalidCredentials(reasons) => format!("invalid credentials: {}", reasons.join("; ")),
            WebhookError::MethodNotAllowed(method) => format!(
                "method {} is not allowed: send a POST (query parameters such as ?tag= also work on a POST with an empty body)",
                quote(method)
            ),
            WebhookError::PayloadTooLarge(size) => format!(
                "the body is {size} bytes, over the limit of {MAX_BODY_BYTES} bytes; split the invalidation into several requests \
                 or send only the fields a mapping needs"
            ),
            WebhookError::InvalidUrl => "the request URL could not be parsed".to_string(),
            WebhookError::InvalidJson(e) => format!("body is not valid JSON: {e}"),
            WebhookError::NotAnObject(kind) => format!(
                "the body is a JSON {kind}; send an object such as {{\"tags\": [\"posts\"]}}, or configure a WEBHOOK_MAPPINGS rule \
                 that matches your CMS's payload"
            ),
            WebhookError::WrongType { field, expected } => format!("field {field} must be {expected}"),
            WebhookError::InvalidValue { field, value, reason } => format!("{field} {}: {reason}", quote(value)),
            WebhookError::UnknownFields { fields, mappings } => {
                let names: Vec<String> = fields.iter().map(|f| quote(f)).collect();
                let hint = if *mappings == 0 {
                    "no WEBHOOK_MAPPINGS are configured: to accept your CMS's own payload, add a rule that matches it".to_string()
                } else {
                    format!("none of the {mappings} WEBHOOK_MAPPINGS rules matched this payload; check their \"when\" fields")
                };
                format!(
                    "unknown field(s) {} in the body; edge-isr accepts tags, paths, prefixes, tag, path, prefix and mode. {hint}",
                    names.join(", ")
                )
            }
            WebhookError::UnknownQueryParameters(names) => {
                let names: Vec<String> = names.iter().map(|n| quote(n)).collect();
                format!(
                    "unknown query parameter(s) {}; accepted are tag, path, prefix, mode and secret (each may repeat except mode and secret)",
                    names.join(", ")
                )
            }
            WebhookError::UnsignedQuery { names, signature } => {
                let names: Vec<String> = names.iter().map(|n| quote(n)).collect();
                format!(
                    "query parameter(s) {} are not covered by the signature: {signature} signs the body only, so anyone who saw \
                     one delivery could add them; put what to invalidate (and mode) in the signed JSON body, or send the secret \
                     as a Bearer token instead of signing",
                    names.join(", ")
                )
            }
            WebhookError::NothingToInvalidate(hint) => format!(
                "nothing to invalidate: {hint}; send at least one of tags, paths or prefixes, e.g. {{\"tags\": [\"posts\"]}} or ?path=/blog/"
            ),
            WebhookError::TooManyItems(n) => format!(
                "too many entries: {n} distinct tags, paths and prefixes, the limit is {MAX_ITEMS} per request in total; \
                 split the invalidation into several requests or use a shared tag or a prefix"
            ),
        }
    }

    /// The JSON error answer (`{"error": message}`), with `Allow` on 405 and
    /// `WWW-Authenticate` on 401.
    pub fn to_response(&self) -> Response {
        let response = Response::json_error(self.status(), &self.message());
        match self.status() {
            401 => response.with_header("www-authenticate", "Bearer realm=\"edge-isr revalidate\""),
            405 => response.with_header("allow", "POST"),
            _ => response,
        }
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for WebhookError {}

/// `value` as a quoted, escaped string of at most [`QUOTE_CHARS`] characters.
pub(crate) fn quote(value: &str) -> String {
    if value.chars().count() <= QUOTE_CHARS {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(QUOTE_CHARS).collect();
        format!("{cut:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_kind_of_failure() {
        assert_eq!(WebhookError::SecretNotConfigured.status(), 401);
        assert_eq!(WebhookError::MissingCredentials.status(), 401);
        assert_eq!(WebhookError::InvalidCredentials(vec![]).status(), 401);
        assert_eq!(WebhookError::MethodNotAllowed("GET".into()).status(), 405);
        assert_eq!(WebhookError::PayloadTooLarge(1).status(), 413);
        assert_eq!(WebhookError::TooManyItems(300).status(), 400);
        assert_eq!(WebhookError::InvalidJson("x".into()).status(), 400);
    }

    #[test]
    fn responses_are_json_with_the_right_extra_headers() {
        let r = WebhookError::MethodNotAllowed("GET".into()).to_response();
        assert_eq!(r.status, 405);
        assert_eq!(r.headers.get("allow"), Some("POST"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("POST"));

        let r = WebhookError::SecretNotConfigured.to_response();
        assert_eq!(r.status, 401);
        assert!(r.headers.contains("www-authenticate"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("REVALIDATE_SECRET is not configured"));
    }

    #[test]
    fn messages_name_the_limit_and_the_field() {
        assert!(WebhookError::TooManyItems(300).message().contains("256"));
        assert!(WebhookError::PayloadTooLarge(70_000).message().contains("65536"));
        let m = WebhookError::WrongType { field: "tags[1]".into(), expected: "a string" }.message();
        assert_eq!(m, "field tags[1] must be a string");
        let m = WebhookError::UnknownFields { fields: vec!["tgas".into()], mappings: 0 }.message();
        assert!(m.contains("\"tgas\"") && m.contains("WEBHOOK_MAPPINGS"), "{m}");
    }

    #[test]
    fn quoted_values_are_escaped_and_shortened() {
        assert_eq!(quote("a\u{7}b"), "\"a\\u{7}b\"");
        let long = "x".repeat(500);
        assert!(quote(&long).len() < 110);
        assert!(quote(&"é".repeat(500)).ends_with("..."));
    }
}
