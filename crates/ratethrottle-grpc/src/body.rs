//! A response body that holds a call's concurrency slot until it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::body::Body;

use crate::Permit;

pin_project_lite::pin_project! {
    /// `inner`, holding `permit` until the last frame (or until dropped: a cancelled call).
    pub(crate) struct Guarded {
        #[pin]
        inner: Body,
        permit: Option<Permit>,
    }
}

impl Guarded {
    pub(crate) fn new(inner: Body, permit: Permit) -> Self {
        Guarded {
            inner,
            permit: Some(permit),
        }
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = frame {
            // The response is over: the slot is free before the client sees the end.
            this.permit.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
