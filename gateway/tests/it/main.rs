//! Integration tests: the real gateway over HTTP against the real Docker
//! daemon and real worker containers. Run through `make test`, which builds
//! the worker image and sweeps everything labelled with its run id.

mod bad_input;
mod common;
mod contract;
mod lifecycle;
mod process;
mod transactions;
