//! The bodies of an admitted call: the response holds the call's concurrency slot until it
//! ends; both directions are cut with `RESOURCE_EXHAUSTED` at the first message over the
//! stream's message limit (the response with trailers, the request with an error its handler
//! sees).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tonic::body::Body;

use crate::messages::MessageLimit;
use ratethrottle_protect::slots::SlotPermit as Permit;

pin_project_lite::pin_project! {
    /// `inner`, holding `permit` until the last frame (or until dropped: a cancelled call),
    /// and counting its messages against `limit`.
    pub(crate) struct Metered {
        #[pin]
        inner: Body,
        permit: Option<Permit>,
        limit: Option<MessageLimit>,
        // The trailers ending a stream cut short, until sent.
        cut: Option<HeaderMap>,
        // A request body: cut with an error instead of trailers.
        request: bool,
        done: bool,
    }
}

impl Metered {
    pub(crate) fn new(inner: Body, permit: Option<Permit>, limit: Option<MessageLimit>) -> Self {
        Metered {
            inner,
            permit,
            limit,
            cut: None,
            request: false,
            done: false,
        }
    }

    /// A request body metered against `limit`.
    pub(crate) fn request(inner: Body, limit: MessageLimit) -> Self {
        Metered {
            request: true,
            ..Metered::new(inner, None, Some(limit))
        }
    }
}

/// The status of a stream whose messages went over `limit`.
fn over(limit: &MessageLimit) -> tonic::Status {
    let mut status = tonic::Status::resource_exhausted(format!(
        "too many messages on this stream: rule {} admitted {}",
        limit.rule(),
        limit.admitted
    ));
    status.metadata_mut().insert(
        "grpc-retry-pushback-ms",
        tonic::metadata::MetadataValue::from(1000u64),
    );
    status
}

/// The trailers that end a response stream whose messages went over `limit`.
fn cut_trailers(limit: &MessageLimit) -> HeaderMap {
    let status = over(limit);
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    trailers
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if let Some(trailers) = this.cut.take() {
                *this.done = true;
                this.permit.take();
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            let frame = match frame {
                Some(Ok(frame)) => frame,
                ended => {
                    // The response is over: the slot is free before the client sees the end.
                    this.permit.take();
                    *this.done = ended.is_none();
                    return Poll::Ready(ended);
                }
            };
            if let (Some(limit), Some(data)) = (this.limit.as_mut(), frame.data_ref())
                && let Some(at) = limit.scan(data)
            {
                if *this.request {
                    // The handler reads up to the cut, then the error.
                    *this.done = true;
                    return Poll::Ready(Some(Err(over(limit))));
                }
                *this.cut = Some(cut_trailers(limit));
                if at > 0 {
                    return Poll::Ready(Some(Ok(Frame::data(data.slice(..at)))));
                }
                continue;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.cut.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.limit.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
