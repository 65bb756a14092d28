//! HTTP web seeds (BEP 19) with `fetch()`: the core plans the requests
//! ([`shoal_proto::webseed`]), this runs them and streams each body into the plan's
//! assembler, so a server can never make us hold more than was asked.
//!
//! Cross-origin servers must allow us by CORS (`Access-Control-Allow-Origin`, and `Range` as
//! a request header, which browsers permit for simple byte ranges). Many do not expose
//! `Content-Range`; then a 206's body length and, after it, the piece hash stand in for it.

use js_sys::{Reflect, Uint8Array};
use shoal_proto::webseed::{self, Assembler, FetchEnd, FetchPlan, WebSeedError};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, Request, RequestInit, Response};

/// Fetches every request of `plan` and returns the plan's bytes; once `signal` aborts, the
/// bytes that had arrived.
pub async fn fetch(plan: &FetchPlan, signal: &AbortSignal) -> FetchEnd {
    let mut assembler = Assembler::new(plan);
    match fetch_into(plan, signal, &mut assembler).await {
        _ if signal.aborted() => FetchEnd::Cancelled(assembler.into_prefix()),
        Ok(()) => match assembler.finish() {
            Ok(data) => FetchEnd::Complete(data),
            Err(e) => FetchEnd::Failed(e),
        },
        Err(e) => FetchEnd::Failed(e),
    }
}

async fn fetch_into(
    plan: &FetchPlan,
    signal: &AbortSignal,
    assembler: &mut Assembler,
) -> Result<(), WebSeedError> {
    for (index, request) in plan.requests.iter().enumerate() {
        let transport = |e: JsValue| {
            let text = e
                .as_string()
                .or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()));
            WebSeedError::Transport(format!("{}: {}", request.url, text.unwrap_or_default()))
        };
        let init = RequestInit::new();
        init.set_method("GET");
        init.set_signal(Some(signal));
        let req = Request::new_with_str_and_init(&request.url, &init).map_err(transport)?;
        req.headers().set("Range", &request.range_header()).map_err(transport)?;
        let window = web_sys::window().ok_or_else(|| transport("no window".into()))?;
        let response: Response = JsFuture::from(window.fetch_with_request(&req))
            .await
            .map_err(transport)?
            .dyn_into()
            .map_err(transport)?;
        let headers = response.headers();
        let content_range = headers.get("content-range").ok().flatten();
        let content_length =
            headers.get("content-length").ok().flatten().and_then(|v| v.trim().parse().ok());
        match (response.status(), &content_range) {
            // The header is hidden from us (CORS): the length checks below still hold.
            (206, None) => {}
            (status, _) => {
                webseed::check_response(request, status, content_range.as_deref(), content_length)?
            }
        }
        let body =
            response.body().ok_or(WebSeedError::TooShort { got: 0, expected: request.len() })?;
        let reader: ReadableStreamDefaultReader =
            body.get_reader().dyn_into().map_err(|v: js_sys::Object| transport(v.into()))?;
        loop {
            let step = JsFuture::from(reader.read()).await.map_err(transport)?;
            if Reflect::get(&step, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
                break;
            }
            let chunk: Uint8Array = Reflect::get(&step, &"value".into())
                .map_err(transport)?
                .dyn_into()
                .map_err(transport)?;
            if let Err(e) = assembler.push(index, &chunk.to_vec()) {
                let _ = reader.cancel();
                return Err(e);
            }
        }
        assembler.end(index)?;
    }
    Ok(())
}
