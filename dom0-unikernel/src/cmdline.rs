//! Dom0's command line: words after `--` on the hypervisor's line, and
//! after `dom0` on its boot module line.

/// A fault to provoke on purpose, for tests of crash reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFault {
    /// Touch an unmapped page.
    PageFault,
    /// Destroy the IDT and trap: the CPU shuts down.
    TripleFault,
    /// Loop forever with interrupts off: a guest that never gives the CPU
    /// back (the hypervisor must preempt it).
    Spin,
    /// Print ten thousand console lines, then go on: a guest flooding the
    /// console (the hypervisor must rate-limit it).
    Flood,
}

/// What the command line asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Power the machine off once ready and every guest has stopped.
    pub poweroff: bool,
    /// As `poweroff`, but report (QEMU status 39) when a guest did not
    /// power off cleanly.
    pub exit_when_idle: bool,
    pub fault: Option<TestFault>,
    /// Create and destroy a guest this many times, reporting free memory
    /// before and after (a leak check).
    pub cycles: Option<u32>,
    /// Check that guest frames mapped into Dom0 read and write through.
    pub map_check: bool,
    /// Check that a device interrupt (the CMOS clock's) reaches Dom0.
    pub interrupt_check: bool,
    /// Bring up the virtio disk and NIC and check them (a disk is written
    /// only when its first sector carries the scratch marker).
    pub device_check: bool,
}

/// Parses Dom0's options; unknown words are returned for a warning.
pub fn parse(cmdline: &str, mut unknown: impl FnMut(&str)) -> Options {
    let mut options = Options::default();
    for word in cmdline.split_whitespace() {
        match word {
            "poweroff" => options.poweroff = true,
            "exit-when-idle" => options.exit_when_idle = true,
            "mapcheck" => options.map_check = true,
            "irqcheck" => options.interrupt_check = true,
            "devcheck" => options.device_check = true,
            "fault=page" => options.fault = Some(TestFault::PageFault),
            "fault=triple" => options.fault = Some(TestFault::TripleFault),
            "fault=spin" => options.fault = Some(TestFault::Spin),
            "fault=flood" => options.fault = Some(TestFault::Flood),
            _ => match word.strip_prefix("cycles=").map(str::parse) {
                Some(Ok(count)) => options.cycles = Some(count),
                _ => unknown(word),
            },
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_switches_and_reports_the_rest() {
        let mut unknown = Vec::new();
        let options = parse(
            " poweroff fault=triple bogus cycles=100 cycles=x exit-when-idle devcheck ",
            |word| unknown.push(word.to_string()),
        );
        assert!(options.poweroff);
        assert!(options.exit_when_idle);
        assert!(options.device_check);
        assert_eq!(options.fault, Some(TestFault::TripleFault));
        assert_eq!(options.cycles, Some(100));
        assert_eq!(unknown, ["bogus", "cycles=x"]);
    }
}
