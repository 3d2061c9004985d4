//! A request's body as the host hands it on: read ahead (up to [`PREFETCHED_BODY`]) before any
//! instance sees the request, so a client that trickles its body in holds a connection, never
//! an instance; and bounded by `--request-body-timeout` as a whole, however slowly it streams.

use crate::serve::limits::PREFETCHED_BODY;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// It did not arrive whole within `--request-body-timeout`.
    TimedOut,
    /// The client broke it off, or sent something that is not HTTP.
    Broken(hyper::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("the request body did not arrive in time"),
            Self::Broken(error) => write!(f, "the request body broke off: {error}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// An incoming body that fails once its deadline has passed.
struct Deadline {
    body: Incoming,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::Broken)));
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TimedOut))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What was read ahead, then the rest of the body (if it was larger) as it arrives.
pub struct RequestBody {
    read: VecDeque<Frame<Bytes>>,
    rest: Option<Deadline>,
}

impl RequestBody {
    /// Reads `body` up to [`PREFETCHED_BODY`] bytes, or all of it if smaller; the whole body
    /// must arrive within `timeout` from now.
    pub async fn prefetch(body: Incoming, timeout: Duration) -> Result<Self, BodyError> {
        let mut rest = Deadline {
            body,
            timer: Box::pin(tokio::time::sleep(timeout)),
        };
        let mut read = VecDeque::new();
        let mut size = 0;
        while size < PREFETCHED_BODY {
            match rest.frame().await {
                None => return Ok(Self { read, rest: None }),
                Some(frame) => {
                    let frame = frame?;
                    size += frame.data_ref().map_or(0, Bytes::len);
                    read.push_back(frame);
                }
            }
        }
        Ok(Self {
            read,
            rest: Some(rest),
        })
    }

    fn read_len(&self) -> u64 {
        self.read
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.len() as u64)
            .sum()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(frame) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.read_len();
        match &self.rest {
            None => SizeHint::with_exact(read),
            Some(rest) => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(read + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(read + upper);
                }
                hint
            }
        }
    }
}
