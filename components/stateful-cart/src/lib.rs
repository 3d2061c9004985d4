//! cartlab's stateful cart, the contrast: sessions live in this instance's own
//! memory, like the seed's sticky express-session MemoryStore. Another instance
//! (Spin runs several under load, and recycles them) does not have them, and a
//! crash loses them. Deliberately nothing else: no key-value, no external state.

use cart_core::{MemoryStore, Settings};
use cart_spin::{Request, Response};

/// The sessions: in this instance's linear memory, gone with it, and bounded
/// (Spin variable `max_sessions`; the least recently used go first). (WASIp3 may
/// run several requests at once on one instance; MemoryStore never holds its
/// lock across an await.)
static SESSIONS: MemoryStore = MemoryStore::new();

cart_spin::http_handler!(handle);

async fn handle(req: Request) -> Response {
    // On a settings error `serve` answers 500 `invalid_config`.
    if let Ok(settings) = cart_spin::settings(Settings::stateful).await {
        SESSIONS.set_max_sessions(settings.max_sessions);
    }
    cart_spin::serve(req, Settings::stateful, &SESSIONS).await
}
