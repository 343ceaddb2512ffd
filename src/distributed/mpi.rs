//! The MPI engine (rsmpi) on host buffers: one process per rank, started by `mpirun`.
//!
//! MPI's collectives have no timeout and a rank that exits without `MPI_Abort` can leave
//! the others waiting. So: every failure path aborts the whole job ([`MpiCommunicator`]'s
//! drop during a panic, [`Communicator::abort`] after an error), and a watchdog thread
//! ends this process when one collective (or the final `MPI_Finalize`) takes longer than
//! `MINITORCH_DIST_TIMEOUT_S` seconds (default 300); `mpirun` then stops the other ranks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives as _, Root as _};
use web_time::Instant;

use super::Communicator;
use crate::error::{Error, Result};

/// Environment variables an MPI launcher sets (OpenMPI, PMIx, MPICH/Hydra and Slurm's PMI).
const LAUNCHER_VARS: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"];

/// The local rank on this node, when the launcher says it (to choose a GPU).
pub fn local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// True when an MPI launcher (mpirun, mpiexec, srun) started this process.
pub fn launched_by_mpi() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// MPI_COMM_WORLD of this process.
pub struct MpiCommunicator {
    world: SimpleCommunicator,
    watchdog: Watchdog,
    // Dropped last: MPI_Finalize.
    _universe: Universe,
}

impl MpiCommunicator {
    /// Initialise MPI: an error when no MPI launcher started this process or MPI is
    /// already initialised.
    pub fn init() -> Result<MpiCommunicator> {
        if !launched_by_mpi() {
            return Err(Error::invalid(
                "mpi",
                format!(
                    "this process was not started by an MPI launcher (none of {LAUNCHER_VARS:?} \
                     is set); run it as `mpirun -n 2 <program> ...` (apt-get install openmpi-bin; \
                     as root add --allow-run-as-root, and --oversubscribe for more ranks than cores)"
                ),
            ));
        }
        let universe = mpi::initialize()
            .ok_or_else(|| Error::invalid("mpi", "MPI is already initialised in this process"))?;
        let world = universe.world();
        Ok(MpiCommunicator {
            world,
            watchdog: Watchdog::start(timeout_from_env()?),
            _universe: universe,
        })
    }

    /// The raw world communicator (for engines bootstrapped over MPI).
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// Broadcast raw bytes from `root`.
    pub fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        self.watchdog.guard("broadcast", || {
            self.world.process_at_rank(root as i32).broadcast_into(buf)
        });
        Ok(())
    }

    /// Run `f` under the watchdog (for collectives of engines bootstrapped over MPI).
    pub fn watched<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        self.watchdog.guard(what, f)
    }
}

fn timeout_from_env() -> Result<Duration> {
    match std::env::var("MINITORCH_DIST_TIMEOUT_S") {
        Ok(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                Error::invalid(
                    "mpi",
                    format!("MINITORCH_DIST_TIMEOUT_S={s:?} is not a positive number of seconds"),
                )
            }),
        Err(_) => Ok(Duration::from_secs(300)),
    }
}

impl Communicator for MpiCommunicator {
    fn name(&self) -> &'static str {
        "mpi"
    }
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world_size(&self) -> usize {
        self.world.size() as usize
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        check_root(root, self.world_size())?;
        self.watchdog.guard("broadcast", || {
            self.world.process_at_rank(root as i32).broadcast_into(buf)
        });
        Ok(())
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.watchdog.guard("all-reduce", || {
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.watchdog.guard("barrier", || self.world.barrier());
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Drop for MpiCommunicator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "minitorch: rank {} panicked; aborting the MPI job",
                self.world.rank()
            );
            self.world.abort(101);
        }
        // MPI_Finalize (the universe's drop, next) waits for every rank: watch it too.
        self.watchdog.arm("MPI_Finalize");
    }
}

pub(crate) fn check_root(root: usize, world: usize) -> Result<()> {
    if root >= world {
        return Err(Error::invalid(
            "broadcast",
            format!("root {root} is not a rank of a world of {world}"),
        ));
    }
    Ok(())
}

/// Ends the process when one watched call runs past the timeout.
struct Watchdog {
    start: Instant,
    // Milliseconds since `start` when the watched call began plus one; 0 when none runs.
    since: Arc<AtomicU64>,
    what: Arc<std::sync::Mutex<&'static str>>,
}

impl Watchdog {
    fn start(timeout: Duration) -> Watchdog {
        let start = Instant::now();
        let since = Arc::new(AtomicU64::new(0));
        let what = Arc::new(std::sync::Mutex::new(""));
        let (s, w) = (since.clone(), what.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100).min(timeout));
            let began = s.load(Ordering::Acquire);
            if began == 0 {
                continue;
            }
            let now = start.elapsed().as_millis() as u64 + 1;
            if Duration::from_millis(now.saturating_sub(began)) > timeout {
                let what = *w.lock().unwrap_or_else(|p| p.into_inner());
                eprintln!(
                    "minitorch: {what} did not complete within {:.1} s (MINITORCH_DIST_TIMEOUT_S): \
                     another rank failed or hangs; ending this rank",
                    timeout.as_secs_f64()
                );
                // No MPI call from this thread: exiting lets the launcher stop the others.
                std::process::exit(70);
            }
        });
        Watchdog { start, since, what }
    }

    fn arm(&self, what: &'static str) {
        *self.what.lock().unwrap_or_else(|p| p.into_inner()) = what;
        let now = self.start.elapsed().as_millis() as u64 + 1;
        self.since.store(now, Ordering::Release);
    }

    fn guard<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        self.arm(what);
        let out = f();
        self.since.store(0, Ordering::Release);
        out
    }
}
