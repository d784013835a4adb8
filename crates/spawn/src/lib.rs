//! The spawn protocol between qmail-send and its two spawners (qmail.md section 3).
//!
//! - [`protocol`]: commands (`<slot byte><messid>\0<sender>\0<recipient>\0`) and reports
//!   (`<slot byte><K|Z|D><text>\0`, the letter as [`protocol::Status`]), and VERP sender
//!   expansion.
//! - [`serve`]: the spawner loop shared by qmail-lspawn and qmail-rspawn: it announces
//!   its slot count, reads commands, opens `mess/S/N`, starts one child per delivery with
//!   the message on fd 0 and a pipe on fd 1 and 2, and reports when the child is done.
//! - [`lspawn`]: qmail-lspawn's logic: recipient split and user mapping (users/cdb, then
//!   passwd, then `alias`), the refusal of uid 0, the qmail-local command with its
//!   verified privilege drop, and qmail-lspawn's exit-code texts.
//! - [`rspawn`]: qmail-rspawn's conversion of qmail-remote's output.

pub mod lspawn;
pub mod protocol;
pub mod rspawn;
pub mod serve;
