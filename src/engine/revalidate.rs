//! The revalidation webhook route: method and size checks, authentication, parsing, then
//! invalidation, in that order (so an unauthenticated caller learns nothing and changes nothing).

use super::Engine;
use crate::http::{Request, Response};
use crate::runtime::log::Level;
use crate::runtime::origin::Origin;
use crate::store::KvStore;
use crate::rules::invalidation::Invalidation;
use crate::webhook::{self, Mappings, WebhookError};

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Answers a call to the revalidation webhook.
    pub async fn handle_revalidate(&self, req: Request) -> Response {
        if !req.method.eq_ignore_ascii_case("POST") {
            return WebhookError::MethodNotAllowed(req.method.clone()).to_response();
        }
        if req.body.len() > webhook::MAX_BODY_BYTES {
            return WebhookError::PayloadTooLarge(req.body.len()).to_response();
        }
        let method = match webhook::authenticate(&req, &self.config.revalidate_secret, self.clock.now_ms()) {
            Ok(m) => m,
            Err(e) => {
                self.log_event(Level::Warn, "webhook_refused", &self.config.revalidate_path, &e.message());
                return e.to_response();
            }
        };
        let mappings = match Mappings::from_json(&self.config.webhook_mappings) {
            Ok(m) => m,
            Err(e) => {
                let message = format!("configuration variable WEBHOOK_MAPPINGS: {e}");
                self.log_event(Level::Error, "webhook_misconfigured", &self.config.revalidate_path, &message);
                return Response::json_error(500, &message);
            }
        };
        if let Err(e) = webhook::refuse_unsigned_query(&req, method) {
            self.log_event(Level::Warn, "webhook_refused", &self.config.revalidate_path, &e.message());
            return e.to_response();
        }
        let invalidation = match webhook::parse_request(&req, &mappings) {
            Ok(r) => r,
            Err(e) => return e.to_response(),
        };
        let hosts = self.invalidation_hosts(&req);
        self.log_event(Level::Info, "webhook_accepted", &self.config.revalidate_path, &format!("authenticated by {}", method.as_str()));
        self.invalidate_and_answer(&hosts, &invalidation).await
    }

    /// Records `invalidation` in the coordinator (when one is bound) *before* answering, marks
    /// the pages in KV, and answers: `200`, or `503` when the coordinator could not record it,
    /// so that the CMS retries (the KV marks are written anyway: this location, and the others
    /// after KV's propagation, have it).
    pub(crate) async fn invalidate_and_answer(&self, hosts: &[String], invalidation: &Invalidation) -> Response {
        let at = self.clock.now_ms();
        let targets = self.tier_targets(hosts, invalidation);
        let recorded = self.record_invalidation(hosts, invalidation, at, targets.clone().unwrap_or_default()).await;
        let tier_via = targets.map(|targets| {
            let seq = recorded.as_ref().ok().copied().flatten();
            self.purge_tier(targets, at, seq);
            if seq.is_some() { "coordinator" } else { "isolate" }
        });
        let outcome = self.invalidate_at(hosts, invalidation, at).await;
        self.end_back_offs();
        let mut answer = outcome.to_json(invalidation.mode);
        if let Some(via) = tier_via {
            // Who plans the Workers Cache purge: the coordinator (within the Worker's rate
            // limit, never lost), or this isolate alone (best effort).
            answer["tier_purge"] = via.into();
        }
        match recorded {
            Ok(seq) => {
                if let Some(seq) = seq {
                    answer["log_seq"] = seq.into();
                }
                Response::json(outcome.status(), &answer)
            }
            Err(e) => {
                let mut message = format!(
                    "recording the invalidation in the coordinator failed ({e}); pages were marked in KV (other locations get it within about {}s), retry to make it live everywhere within seconds",
                    super::coordinate::KV_PROPAGATION_S
                );
                self.log_event(Level::Error, "invalidation_incomplete", "", &message);
                if let Some(queue_error) = answer["error"].as_str() {
                    message = format!("{message}; {queue_error}");
                }
                answer["complete"] = false.into();
                answer["error"] = message.into();
                Response::json(503, &answer).with_header("retry-after", "1")
            }
        }
    }

    /// After an invalidation: the content changed, so this isolate asks the origin again at
    /// once, for pages whose renders were failing and pages whose regenerations were.
    pub(crate) fn end_back_offs(&self) {
        self.isolate.failing_renders.clear_all();
        self.isolate.regenerations.clear_all_backoffs();
    }

    /// Hosts whose pages a webhook call invalidates: the configured `CACHE_HOSTS`, or the host
    /// the webhook was called on (pages are keyed by host).
    pub(crate) fn invalidation_hosts(&self, req: &Request) -> Vec<String> {
        if !self.config.cache_hosts.is_empty() {
            return self.config.cache_hosts.clone();
        }
        crate::rules::key::parse_url(&req.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .into_iter()
            .collect()
    }
}
