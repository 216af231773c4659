//! Measuring the TSC frequency against the PIT when the machine may lose
//! the CPU at any moment (an emulator's thread descheduled on a loaded host).
//!
//! Every sample is one latch of the PIT counter with a TSC read on each side.
//! A sample whose TSC reads are far apart was interrupted, and its PIT value
//! could belong to any instant in that gap; a quick one pins the PIT reading
//! to a TSC value within its width. The frequency comes from the quickest
//! sample near the start of the window and the quickest near its end, so a
//! stall anywhere else, however long, costs nothing, and a stall inside an
//! anchor sample shows as that sample's width instead of skewing the
//! result. [`PitCalibration`] takes samples one at a time, so the hypervisor
//! keeps no buffer and the selection is tested on recorded sequences.

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// One PIT counter latch bracketed by two TSC reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PitSample {
    /// TSC just before the latch command.
    pub tsc_before: u64,
    /// TSC just after it.
    pub tsc_after: u64,
    /// PIT input-clock ticks since the counter was loaded.
    pub pit_ticks: u64,
}

impl PitSample {
    /// TSC ticks the latch may have happened across.
    pub const fn width(&self) -> u64 {
        self.tsc_after.saturating_sub(self.tsc_before)
    }

    /// The TSC value the latch is taken to have happened at (the middle).
    const fn tsc_middle(&self) -> u64 {
        self.tsc_before + self.width() / 2
    }
}

/// A frequency and how far off it can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscEstimate {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Bound on the relative error from the two anchors' widths, in parts
    /// per million (PIT quantization adds about 1 / anchor distance in PIT
    /// ticks, under 100 ppm for the window used at boot).
    pub error_ppm: u64,
}

/// What to do after a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Take another sample.
    More,
    /// The window is over; call [`PitCalibration::estimate`].
    Done,
}

/// The anchor selection over one window of PIT ticks: the narrowest sample
/// in the first quarter starts the measurement, the narrowest in the last
/// quarter ends it.
#[derive(Clone, Copy, Debug)]
pub struct PitCalibration {
    window_ticks: u64,
    start: Option<PitSample>,
    end: Option<PitSample>,
}

impl PitCalibration {
    /// A window of `window_ticks` PIT ticks (at least 4).
    pub const fn new(window_ticks: u64) -> Self {
        Self {
            window_ticks,
            start: None,
            end: None,
        }
    }

    /// Takes one sample. Samples must come in PIT order; one whose TSC
    /// reads are out of order (a torn read) is ignored.
    pub fn add(&mut self, sample: PitSample) -> Progress {
        if sample.tsc_after < sample.tsc_before {
            return Progress::More;
        }
        let quarter = self.window_ticks / 4;
        if sample.pit_ticks >= self.window_ticks {
            return Progress::Done;
        }
        let slot = if sample.pit_ticks < quarter {
            &mut self.start
        } else if sample.pit_ticks >= self.window_ticks - quarter {
            &mut self.end
        } else {
            return Progress::More;
        };
        if slot.is_none_or(|best| sample.width() < best.width()) {
            *slot = Some(sample);
        }
        Progress::More
    }

    /// The frequency between the two anchors, or `None` if either quarter
    /// had no sample (the whole quarter was lost) or the PIT or TSC did
    /// not advance between them.
    pub fn estimate(&self) -> Option<TscEstimate> {
        let (start, end) = (self.start?, self.end?);
        let pit_ticks = end.pit_ticks.checked_sub(start.pit_ticks)?;
        let tsc_ticks = end.tsc_middle().checked_sub(start.tsc_middle())?;
        if pit_ticks == 0 || tsc_ticks == 0 {
            return None;
        }
        let tsc_hz = u128::from(tsc_ticks) * u128::from(PIT_HZ) / u128::from(pit_ticks);
        let half_widths = u128::from(start.width() / 2 + end.width() / 2 + 1);
        let error_ppm = half_widths * 1_000_000 / u128::from(tsc_ticks);
        Some(TscEstimate {
            tsc_hz: u64::try_from(tsc_hz).ok()?,
            error_ppm: u64::try_from(error_ppm).unwrap_or(u64::MAX),
        })
    }
}

/// Runs a whole window over recorded samples; see [`PitCalibration`].
pub fn estimate_from_samples(
    window_ticks: u64,
    samples: impl IntoIterator<Item = PitSample>,
) -> Option<TscEstimate> {
    let mut calibration = PitCalibration::new(window_ticks);
    for sample in samples {
        if calibration.add(sample) == Progress::Done {
            break;
        }
    }
    calibration.estimate()
}

/// Of several windows' estimates, the one with the smallest error bound.
pub fn best_estimate(estimates: impl IntoIterator<Item = TscEstimate>) -> Option<TscEstimate> {
    estimates
        .into_iter()
        .min_by_key(|estimate| estimate.error_ppm)
}
