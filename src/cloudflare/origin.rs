//! The origin over `fetch`, with a time limit covering the whole response, body included.

use super::convert;
use crate::http::{Request, Response};
use crate::origin::{Origin, OriginError};
use futures_util::future::{select, Either};
use std::time::Duration;
use worker::{AbortController, Delay, Fetch};

/// Fetches pages from the configured `ORIGIN_URL`.
pub struct FetchOrigin;

impl Origin for FetchOrigin {
    async fn fetch(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        let controller = AbortController::default();
        let signal = controller.signal();
        let request = convert::to_worker_request(&req).map_err(|e| OriginError::Network(e.to_string()))?;
        let exchange = Box::pin(async move {
            let resp = Fetch::Request(request).send_with_signal(&signal).await?;
            convert::from_worker_response(resp).await
        });
        let timer = Delay::from(Duration::from_millis(timeout_ms));
        match select(exchange, timer).await {
            Either::Left((Ok(resp), _)) => Ok(resp),
            Either::Left((Err(e), _)) => Err(OriginError::Network(e.to_string())),
            Either::Right(((), _)) => {
                controller.abort();
                Err(OriginError::Timeout(timeout_ms))
            }
        }
    }
}
