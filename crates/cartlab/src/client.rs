//! A shopper's HTTP client for the cart API, shared by `cartlab demo`, `cartlab experiment`
//! and the integration tests: one cookie jar per shopper, as a browser has. The bodies and
//! headers are `cart_core::contract`'s, so prices stay whole cents end to end.

use cart_core::Cents;
use cart_core::contract::{
    AddItem, CartView, ErrorBody, ErrorDetail, IDEMPOTENCY_KEY_HEADER, INSTANCE_HEADER,
    REQUESTS_HEADER,
};
use cart_core::money::Dollars;
use reqwest::Method;
use reqwest::cookie::CookieStore as _;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The two designs, under the URL prefixes spin.toml gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Design {
    Stateful,
    Stateless,
}

impl Design {
    pub const BOTH: [Design; 2] = [Design::Stateful, Design::Stateless];

    /// The component's `serverKind`, and its URL prefix without the slash.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Stateful => "stateful",
            Self::Stateless => "stateless",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Self::Stateful => "/stateful",
            Self::Stateless => "/stateless",
        }
    }

    pub fn component(self) -> &'static str {
        match self {
            Self::Stateful => "stateful-cart",
            Self::Stateless => "stateless-cart",
        }
    }
}

/// `stateful` / `stateless`, as in URLs and `serverKind`.
impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// What one request got back.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// The answering instance's id (`x-cartlab-instance`); empty when no instance answered
    /// (a host error such as `no_live_instance`).
    pub instance: String,
    /// Requests that instance has served, this one included (`x-cartlab-requests`; 0 without).
    pub requests: u64,
    pub retry_after: Option<String>,
    /// The body as JSON; a string when it is not JSON (a proxy's 502 page, say). Its numbers
    /// have been through f64: read money from [`Answer::cart`].
    pub body: Value,
    /// The cart, when the body is one.
    pub cart: Option<CartView>,
    /// The JSON error, when the body is one.
    pub error: Option<ErrorDetail>,
    pub elapsed: Duration,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The cart's total, when the answer carries a cart.
    pub fn total(&self) -> Option<Cents> {
        self.cart.as_ref().map(|cart| cart.total.0)
    }

    /// The cart's items in line order; none without a cart.
    pub fn items(&self) -> Vec<String> {
        self.cart
            .iter()
            .flat_map(|cart| cart.cart.iter().map(|line| line.item.clone()))
            .collect()
    }

    /// The error's code, when the answer is a JSON error.
    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref().map(|error| error.code.as_str())
    }

    /// No HTTP answer at all (the connection was refused or reset, or timed out): status 0,
    /// the transport error and its causes as the body.
    pub fn unreachable(error: &reqwest::Error, elapsed: Duration) -> Answer {
        let causes =
            std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            });
        let message: Vec<String> = causes.map(ToString::to_string).collect();
        Answer {
            status: 0,
            instance: String::new(),
            requests: 0,
            retry_after: None,
            body: Value::String(message.join(": ")),
            cart: None,
            error: None,
            elapsed,
        }
    }

    pub fn describe_error(&self) -> String {
        if self.status == 0 {
            return format!("no answer: {}", self.body.as_str().unwrap_or_default());
        }
        match &self.error {
            Some(error) => format!("{} {}: {}", self.status, error.code, error.message),
            None => format!("HTTP {}", self.status),
        }
    }

    fn read(
        status: u16,
        headers: &reqwest::header::HeaderMap,
        text: String,
        elapsed: Duration,
    ) -> Answer {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        // Typed views from the text itself, so that prices never pass through a float.
        let cart = serde_json::from_str::<CartView>(&text).ok();
        let error = serde_json::from_str::<ErrorBody>(&text)
            .ok()
            .map(|body| body.error);
        Answer {
            status,
            instance: header(INSTANCE_HEADER).unwrap_or_default(),
            requests: header(REQUESTS_HEADER)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            retry_after: header(reqwest::header::RETRY_AFTER.as_str()),
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            cart,
            error,
            elapsed,
        }
    }
}

/// One shopper: one cookie jar, like `curl -c jar -b jar`, against the carts under `base`.
#[derive(Clone)]
pub struct Shopper {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: String,
}

impl Shopper {
    pub fn new(base_url: &str) -> reqwest::Result<Self> {
        Self::build(base_url, reqwest::redirect::Policy::default())
    }

    /// Like [`Shopper::new`], but a redirect is an answer, never followed: for runs that
    /// must send traffic to the address given and nowhere else (`cartlab experiment --url`).
    pub fn without_redirects(base_url: &str) -> reqwest::Result<Self> {
        Self::build(base_url, reqwest::redirect::Policy::none())
    }

    fn build(base_url: &str, redirects: reqwest::redirect::Policy) -> reqwest::Result<Self> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(redirects)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            jar,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// The same shopper (same cookie jar) talking to another address.
    pub fn rebase(&self, base_url: &str) -> Shopper {
        Shopper {
            http: self.http.clone(),
            jar: self.jar.clone(),
            base: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The `name=value` session cookie the jar would send to `design`'s routes.
    pub fn cookie(&self, design: Design) -> Option<String> {
        let url = format!("{}{}/cart", self.base, design.prefix())
            .parse()
            .ok()?;
        let header = self.jar.cookies(&url)?;
        let name = format!("{}=", cart_core::contract::cookie_name(design.kind()));
        header
            .to_str()
            .ok()?
            .split("; ")
            .find(|pair| pair.starts_with(&name))
            .map(str::to_string)
    }

    pub async fn add(&self, design: Design, item: &str, price: Cents) -> reqwest::Result<Answer> {
        let body = AddItem {
            item: item.to_string(),
            price: Dollars(price),
            quantity: None,
        };
        let path = format!("{}/cart/add", design.prefix());
        self.request(Method::POST, &path, Some(&body), None).await
    }

    pub async fn cart(&self, design: Design) -> reqwest::Result<Answer> {
        let path = format!("{}/cart", design.prefix());
        self.send(Method::GET, &path, None).await
    }

    pub async fn remove_line(&self, design: Design, index: usize) -> reqwest::Result<Answer> {
        let path = format!("{}/cart/items/{index}", design.prefix());
        self.send(Method::DELETE, &path, None).await
    }

    pub async fn crash(&self, design: Design) -> reqwest::Result<Answer> {
        let path = format!("{}/crash", design.prefix());
        self.send(Method::POST, &path, None).await
    }

    pub async fn health(&self, design: Design) -> reqwest::Result<Answer> {
        let path = format!("{}/health", design.prefix());
        self.send(Method::GET, &path, None).await
    }

    /// Any request; `path` is the whole path (`/stateless/cart`), `body` is sent as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<Answer> {
        self.send_keyed(method, path, body, None).await
    }

    /// [`Shopper::send`] with an `Idempotency-Key`, so that a retry applies the change once.
    pub async fn send_keyed(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> reqwest::Result<Answer> {
        self.request(method, path, body.as_ref(), idempotency_key)
            .await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
        idempotency_key: Option<&str>,
    ) -> reqwest::Result<Answer> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        Ok(Answer::read(status, &headers, text, started.elapsed()))
    }
}
