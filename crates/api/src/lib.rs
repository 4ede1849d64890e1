//! The RPC gateway and the Sas operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agents;
pub mod auth;
pub mod console;
pub mod gateway;
pub mod http;
pub mod ops;
pub mod params;
pub mod tls;
pub mod webhooks;

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
    /// The agents' polls and when agents were last heard from.
    pub agents: agents::AgentHub,
    /// Set while the node's first-start work is under way (the demo's first check through its
    /// agents): `/healthz` answers 503 `starting` meanwhile.
    pub starting: std::sync::atomic::AtomicBool,
}

impl App {
    /// A new app. Waiting agent polls are woken whenever the engine is.
    pub fn new(store: Arc<Store>, engine: Arc<Engine>, settings: ops::Settings) -> Arc<App> {
        let hub = agents::AgentHub::new(settings.max_agent_polls, settings.agent_poll_wait);
        let app = Arc::new(App {
            store,
            engine,
            settings,
            idempotency: Mutex::new(()),
            agents: hub,
            starting: Default::default(),
        });
        let weak = Arc::downgrade(&app);
        app.engine.on_wake(Box::new(move || {
            if let Some(app) = weak.upgrade() {
                app.agents.wake();
            }
        }));
        agents::AgentHub::start_flushing(&app, std::time::Duration::from_secs(2));
        webhooks::start_delivering(&app);
        app
    }
}
