//! cartlab's stateful cart for Spin 3.x hosts (WASIp2, spin-sdk 5.2), the contrast: sessions
//! in this instance's own memory, like the WASIp3 `stateful-cart`. Spin gives every WASIp2
//! request a fresh instance, so here every cart is forgotten after the request that made it.

use cart_core::{MemoryStore, Settings};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

/// The sessions: in this instance's linear memory, gone with it, and bounded (Spin variable
/// `max_sessions`).
static SESSIONS: MemoryStore = MemoryStore::new();

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    // On a settings error `serve` answers 500 `invalid_config`.
    if let Ok(settings) = cart_spin_wasip2::settings(Settings::stateful) {
        SESSIONS.set_max_sessions(settings.max_sessions);
    }
    cart_spin_wasip2::serve(req, out, Settings::stateful, &SESSIONS).await
}
