//! Our ucspi-tcp (DJB's ucspi-tcp 0.88 with the IPv6 additions of ucspi-tcp6): the logic of
//! tcpserver, tcpclient and rblsmtpd, whose `main.rs` files only wire it.
//!
//! - [`addr`]: listening and connecting addresses, ports by number or service name.
//! - [`env`]: the `PROTO`/`TCP*` environment a connection's program sees.
//! - [`log`]: tcpserver's log lines, with ucspi-tcp's field sanitising.
//! - [`rules`]: the access rules text, its cdb encoding and the lookup order.
//! - [`ident`]: the RFC 1413 client behind `TCPREMOTEINFO`.
//! - [`perclient`]: tcpserver's limits per client address (`-C`, `-N`, rule variables).
//! - [`ahead`]: `-a`, the next connection's program started before it arrives.
//! - [`server`]: tcpserver itself: options, listen, accept, the per-connection child.
//! - [`spawn`]: the program started on the direct way, a clone that runs beside tcpserver.
//! - [`rbl`]: rblsmtpd's decision and its minimal SMTP refusal.

pub mod addr;
pub mod ahead;
pub mod env;
pub mod ident;
pub mod log;
pub mod perclient;
pub mod rbl;
pub mod rules;
pub mod server;
pub mod spawn;
