//! The generic lock-free pool engine (placeholder: being written).
