//! DB-Forge's benchmarks: a load generator, the scenarios of the performance
//! targets, and the baselines they are compared with in the same run.
//!
//! - [`load`]: the closed-loop engine (N callers, fixed duration, uncounted
//!   warm-up, HDR histograms).
//! - [`http`]: keep-alive HTTP/1.1 callers and a small JSON client.
//! - [`cpu`]: CPU time per process and memory from `/proc`.
//! - [`baseline`]: the in-process hyper + rusqlite server.
pub mod baseline;
pub mod cpu;
pub mod exec;
pub mod http;
pub mod inproc;
pub mod load;
pub mod report;
pub mod suite;
pub mod workload;
