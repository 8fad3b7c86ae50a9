//! The reference parts of `README.md` and `docs/http.md` checked against
//! what the routes serve: the example documents and field tables against
//! the JSON Schemas of the OpenAPI document (generated from the wire
//! types), the health reasons against the schema's list, and the metrics
//! tables against a scrape. (The Rust code blocks are the crate's
//! documentation tests.)

mod markdown;
mod reference;
