//! Knowing it works: the health model, the metrics, and the notifications that carry both out.

pub mod health;
pub mod metrics;
pub mod notifications;
