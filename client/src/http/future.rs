//! The named response future of [`RateLimit`](super::RateLimit).

use super::caller::Caller;
use super::decision::Verdict;
use super::deferred::Deferred;
use super::headers;
use axum::body::Body;
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

pub(crate) type Deciding = Pin<Box<dyn Future<Output = Verdict> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`]: decides, then runs the inner service (or
    /// answers 429), then adds the rate-limit headers.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Deciding {
            deciding: Deciding,
            service: Option<S>,
            request: Option<Request<B>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            headers: Option<HeaderMap>,
            deferred: Option<Box<Deferred>>,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn deciding(deciding: Deciding, service: S, request: Request<B>) -> Self {
        Self {
            state: State::Deciding {
                deciding,
                service: Some(service),
                request: Some(request),
            },
        }
    }

    pub(crate) fn calling(future: S::Future, headers: Option<HeaderMap>) -> Self {
        Self {
            state: State::Calling {
                future,
                headers,
                deferred: None,
            },
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProjection::Deciding {
                    deciding,
                    service,
                    request,
                } => {
                    let verdict = match deciding.as_mut().poll(cx) {
                        Poll::Ready(verdict) => verdict,
                        Poll::Pending => return Poll::Pending,
                    };
                    match (verdict, service.take(), request.take()) {
                        (
                            Verdict::Serve(headers, taken, deferred),
                            Some(mut service),
                            Some(mut request),
                        ) => {
                            if let Some(caller) = request.extensions_mut().get_mut::<Caller>() {
                                caller.decisions.extend(taken);
                            }
                            let future = service.call(request);
                            state.set(State::Calling {
                                future,
                                headers,
                                deferred,
                            });
                        }
                        (Verdict::Answer(response), _, _) => {
                            state.set(State::Answered {
                                response: Some(response),
                            });
                        }
                        // Polled again after completion: nothing left to do.
                        _ => return Poll::Pending,
                    }
                }
                StateProjection::Calling {
                    future,
                    headers,
                    deferred,
                } => {
                    let mut response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Pending => return Poll::Pending,
                    };
                    let headers = match deferred.take() {
                        Some(deferred) => deferred.settle(response.status(), headers.take()),
                        None => headers.take(),
                    };
                    if let Some(headers) = headers {
                        headers::merge(response.headers_mut(), &headers);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProjection::Answered { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
