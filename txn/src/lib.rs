//! The client side of KV: routing by range, retries and the transaction coordinator.
