//! The Linux sandbox (placeholder: being written).
