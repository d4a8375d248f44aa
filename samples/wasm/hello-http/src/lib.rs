//! An HTTP function: answers every request with a greeting naming the
//! path, the `GREETING` environment variable (from the pod spec) if set,
//! and how many bytes the request body had.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

fn body_len(request: &IncomingRequest) -> usize {
    let Ok(body) = request.consume() else { return 0 };
    let Ok(mut stream) = body.stream() else { return 0 };
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    drop(stream);
    IncomingBody::finish(body);
    data.len()
}

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
        let received = body_len(&request);
        let text = format!("{greeting} from wasm at {path} ({received} bytes received)\n");
        let headers = Fields::new();
        let _ = headers.append("content-type", b"text/plain");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body of a new response");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("the body's stream");
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}
