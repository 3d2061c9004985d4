//! A shopper's HTTP client for the cart API, shared by `cartlab demo` and
//! `cartlab experiment`: one cookie jar per shopper, as a browser has.

use serde::Deserialize;
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

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CartLine {
    pub item: String,
    pub price: f64,
    pub quantity: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    server_id: Option<String>,
    requests_served: Option<u64>,
    cart: Option<Vec<CartLine>>,
    total: Option<f64>,
    error: Option<ErrorBody>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// What one request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub server_id: Option<String>,
    pub requests_served: Option<u64>,
    /// The cart, when the answer carries one.
    pub cart: Option<Vec<CartLine>>,
    pub total: Option<f64>,
    /// `code: message` of a JSON error.
    pub error: Option<(String, String)>,
    pub elapsed: Duration,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn describe_error(&self) -> String {
        match &self.error {
            Some((code, message)) => format!("{} {code}: {message}", self.status),
            None => format!("HTTP {}", self.status),
        }
    }
}

/// One shopper against one design.
#[derive(Clone)]
pub struct Shopper {
    http: reqwest::Client,
    base: String,
    design: Design,
}

impl Shopper {
    pub fn new(base_url: &str, design: Design) -> anyhow::Result<Self> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            design,
        })
    }

    pub fn design(&self) -> Design {
        self.design
    }

    pub async fn add(&self, item: &str, price_dollars: f64) -> reqwest::Result<Answer> {
        let body = serde_json::json!({ "item": item, "price": price_dollars });
        self.send(reqwest::Method::POST, "/cart/add", Some(body))
            .await
    }

    pub async fn cart(&self) -> reqwest::Result<Answer> {
        self.send(reqwest::Method::GET, "/cart", None).await
    }

    pub async fn remove_line(&self, index: usize) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/cart/items/{index}"),
            None,
        )
        .await
    }

    pub async fn crash(&self) -> reqwest::Result<Answer> {
        self.send(reqwest::Method::POST, "/crash", None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Result<Answer> {
        let url = format!("{}{}{path}", self.base, self.design.prefix());
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status().as_u16();
        let header_id = response
            .headers()
            .get("x-cartlab-instance")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let text = response.text().await?;
        let elapsed = started.elapsed();
        // Not every answer is ours (a proxy's 502 page, say): keep the status.
        let body: Body = serde_json::from_str(&text).unwrap_or_default();
        Ok(Answer {
            status,
            server_id: body.server_id.or(header_id),
            requests_served: body.requests_served,
            cart: body.cart,
            total: body.total,
            error: body.error.map(|error| (error.code, error.message)),
            elapsed,
        })
    }
}
