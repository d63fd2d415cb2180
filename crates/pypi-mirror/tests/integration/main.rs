//! pypi-mirror's integration tests, one binary (helpers shared, one link
//! step): the builder (`build`, `cli`, `safety`, `install` with real pip and
//! uv) and `serve` (`serve_*`, over loopback, with `serve_common`'s fake
//! upstreams and raw client).

mod build;
mod cli;
mod install;
mod installers;
mod safety;
mod serve_common;
mod serve_faults;
mod serve_fidelity;
mod serve_http;
mod serve_install;
mod serve_pages;
mod serve_upstreams;
