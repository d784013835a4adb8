//! Service directories in daemontools 0.76's formats (DESIGN section 6): the
//! `supervise/status` byte layout, the `control` and `ok` fifos and `lock`, and the
//! programs built on them: [`supervise`], [`scan`] (svscan), and [`ctl`] (svc, svstat,
//! svok). Debian's daemontools and ours work against each other's directories.

pub mod ctl;
pub mod scan;
pub mod status;
pub mod supervise;
