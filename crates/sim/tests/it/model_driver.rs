//! The one driver of the model-based tests (the page allocator's `model`, SLUB's
//! `slab_model`, vmalloc's `vmalloc_model`): boot the machine, seed the random stream, run
//! the steps on random CPUs, check the whole machine against the model every so many
//! steps, and let the model free everything and prove the machine is back where it began.
//!
//! Every random choice comes from one ChaCha8 stream seeded by [`Run::seed`] (which also
//! seeds the machine), so a failure replays exactly: the driver names the model, the seed
//! and the step that failed. (The models are not proptest state machines: their steps
//! choose among live objects and react to the machine's answers, and each run is tens of
//! thousands of steps on a booted machine, so shrinking by re-running would cost minutes
//! per failure; the seed and step are the reproduction.)

use kmemlab_sim::Machine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fixtures::MachineBuilder;

/// One model run: its machine, seed, length and the model's own parameters.
pub struct Run<P> {
    /// Printed with every failure.
    pub name: &'static str,
    /// The machine (its seed is set from [`Run::seed`]).
    pub machine: MachineBuilder,
    /// The seed of the machine and of the test's random stream.
    pub seed: u64,
    /// Random operations to run.
    pub steps: usize,
    /// [`Model::check`] runs at step 0, every this many steps, and after the last.
    pub check_every: usize,
    /// What this model needs beyond the machine.
    pub params: P,
}

/// A reference model of one allocator, driven by [`run_model`].
pub trait Model: Sized {
    /// The model's own parameters ([`Run::params`]).
    type Params;

    /// The model of the freshly booted machine `m` (setup may draw from `rng`).
    fn start(run: &Run<Self::Params>, m: &Machine, rng: &mut ChaCha8Rng) -> Self;

    /// One random operation on CPU `cpu`, checked against the model.
    fn step(
        &mut self,
        run: &Run<Self::Params>,
        m: &Machine,
        rng: &mut ChaCha8Rng,
        step: usize,
        cpu: usize,
    );

    /// The machine's invariant checkers and counters against the model.
    fn check(&mut self, run: &Run<Self::Params>, m: &Machine, step: usize);

    /// Free everything that is left and check that the machine is back where it began.
    fn finish(self, run: &Run<Self::Params>, m: &Machine, rng: &mut ChaCha8Rng);
}

/// Where a run is, for the failure message.
struct Progress {
    name: &'static str,
    seed: u64,
    at: String,
}

impl Drop for Progress {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "model {}: seed {} failed at {} (the run is deterministic: rerun the test to replay it)",
                self.name, self.seed, self.at
            );
        }
    }
}

/// Run model `M` as `run` says.
pub fn run_model<M: Model>(run: &Run<M::Params>) {
    let mut progress = Progress {
        name: run.name,
        seed: run.seed,
        at: "boot".into(),
    };
    let m = run.machine.clone().seed(run.seed).boot();
    let cpus = m.config().cpus;
    let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
    progress.at = "setup".into();
    let mut model = M::start(run, &m, &mut rng);
    for step in 0..run.steps {
        progress.at = format!("step {step}");
        let cpu = rng.gen_range(0..cpus);
        model.step(run, &m, &mut rng, step, cpu);
        if step % run.check_every == 0 || step + 1 == run.steps {
            model.check(run, &m, step);
        }
    }
    progress.at = "the end (freeing everything)".into();
    model.finish(run, &m, &mut rng);
}
