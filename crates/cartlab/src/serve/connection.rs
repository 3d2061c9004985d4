//! One client connection's life past hyper's own limits: the keep-alive timeout (a
//! connection with no request in flight that sends nothing is closed), and a response body
//! that holds what must last as long as the response does (the request's place among those
//! in flight).

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Requests in flight on one connection, from their head until their response body is done.
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests finished so far: each idle spell is told apart by it.
    finished: AtomicU64,
}

impl Activity {
    /// A request has started; it is in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// `Some(spell)` while no request is in flight.
    fn idle_spell(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| self.finished.load(Ordering::Acquire))
    }
}

/// One request in flight on its connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket that reads as closed once the connection has been idle (no request
/// in flight, nothing received) for the keep-alive timeout: hyper then closes it as a client
/// that hung up. Bytes received while idle are the next request's head, which hyper's
/// header-read timeout bounds instead.
pub struct IdleClosing<S> {
    inner: S,
    activity: Arc<Activity>,
    keep_alive: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The idle spell the timer is armed for.
    armed_for: Option<u64>,
    /// The idle spell in which bytes arrived.
    heard_in: Option<u64>,
}

impl<S> IdleClosing<S> {
    pub fn new(inner: S, activity: Arc<Activity>, keep_alive: Duration) -> Self {
        Self {
            inner,
            activity,
            keep_alive,
            timer: Box::pin(tokio::time::sleep(keep_alive)),
            armed_for: None,
            heard_in: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleClosing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if let Some(spell) = this.activity.idle_spell() {
                    this.heard_in = Some(spell);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        let Some(spell) = this.activity.idle_spell() else {
            return Poll::Pending;
        };
        if this.heard_in == Some(spell) {
            return Poll::Pending;
        }
        if this.armed_for != Some(spell) {
            this.armed_for = Some(spell);
            let deadline = tokio::time::Instant::now() + this.keep_alive;
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            // End of stream: hyper closes an idle connection whose client went away.
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleClosing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps `guard` alive until the body is done or dropped.
pub struct Holding<B, G> {
    body: B,
    _guard: G,
}

impl<B, G> Holding<B, G>
where
    B: Body<Data = Bytes, Error = io::Error> + Send + Unpin + 'static,
    G: Send + Unpin + 'static,
{
    pub fn boxed(body: B, guard: G) -> crate::serve::host::Body {
        Holding {
            body,
            _guard: guard,
        }
        .boxed_unsync()
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Holding<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
