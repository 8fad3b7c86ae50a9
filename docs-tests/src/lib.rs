//! The project's Markdown documentation, compiled: every ` ```rust ` block
//! of `README.md` and `docs/http.md` is a documentation test of this crate,
//! so `cargo test --workspace` builds (and, unless marked `no_run`, runs)
//! them. The crate is not published and has no code of its own.
//!
//! Blocks in other languages are marked as such (` ```bash `, ` ```json `,
//! ` ```toml `, ` ```yaml `, ` ```text `); setup a reader does not need is
//! on hidden `# ` lines; blocks that would start servers or a Raft node are
//! `no_run`.

/// `README.md`.
#[doc = include_str!("../../README.md")]
pub mod readme {}

/// `docs/http.md`.
#[doc = include_str!("../../docs/http.md")]
pub mod http {}
