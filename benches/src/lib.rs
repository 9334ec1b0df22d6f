//! DB-Forge's benchmarks: a load generator, the scenarios of the performance
//! targets, and the baselines they are compared with in the same run.
//!
//! - [`load`]: the closed-loop engine (N callers, fixed duration, uncounted
//!   warm-up, HDR histograms).
//! - [`http`]: keep-alive HTTP/1.1 callers and a small JSON client.
//! - [`cpu`]: CPU time per process and memory from `/proc`.
//! - [`baseline`]: the in-process hyper + rusqlite server.
//! - [`workload`]: the scenarios' schema, SQL and request bodies.
//! - [`inproc`]: the same SQL in-process (the limit of SQLite itself).
//! - [`exec`]: baselines at the `docker exec` level (naive, warm, cold start).
//! - [`suite`]: the scenario driver; [`report`]: tables, JSON, Markdown.
//! - [`profile`]: a system-wide `perf` profile of a measured window.
pub mod baseline;
pub mod cpu;
pub mod exec;
pub mod http;
pub mod inproc;
pub mod load;
pub mod profile;
pub mod report;
pub mod suite;
pub mod workload;
