//! The RPC gateway and the Sas operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod gateway;
pub mod http;
pub mod ops;
pub mod params;

pub use client::{encoding, signature, time};

use std::sync::{Arc, Mutex};

use engine::Engine;
use store::Store;

/// What the gateway serves with.
pub struct App {
    /// The store.
    pub store: Arc<Store>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Settings the operations read.
    pub settings: ops::Settings,
    /// Serialises ClientToken calls.
    pub idempotency: Mutex<()>,
}

impl App {
    /// A new app.
    pub fn new(store: Arc<Store>, engine: Arc<Engine>, settings: ops::Settings) -> Arc<App> {
        Arc::new(App { store, engine, settings, idempotency: Mutex::new(()) })
    }
}
