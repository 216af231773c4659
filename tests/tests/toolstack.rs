//! The toolstack's bad-input and lifecycle paths, cheaply: every guest is
//! the self-checking test guest started from an xl.cfg (a boot in
//! seconds, not the ~40 s of a Debian guest). An appliance config picks
//! the boot guests; broken configs are refused with clear errors while
//! the good guests run; `on_crash = "preserve"` keeps a crashed guest;
//! `on_poweroff = "restart"` brings a guest back as a new domain; a guest
//! that wrecks its xenstore and console rings is reported and cut off
//! while Dom0 and the guests after it carry on. Each test asserts what the
//! operator sees on the serial line and QEMU's exit status.
//!
//! The test guest's command-line words used here: `await-input` (wait for
//! a byte typed on its console before the verdict: the tests end a guest
//! when they choose), `shutdown=crash`, `rings=indices|protocol`.

use std::path::{Path, PathBuf};

use xenolith_tests::{
    EXIT_POWEROFF, EXIT_POWEROFF_FAILURE, Failure, Qemu, Running, TempDir, boot_timeout, images,
    make_iso_with_modules, number_after,
};

/// What the test guest's kernel module is called in every config.
const KERNEL: &str = "test-guest.elf";

/// Lines that must never appear.
const TROUBLE: &[&str] = &["dom0 crashed", "dom0: panic", "dom0 triple fault", "fatal:"];

/// The boot modules of one appliance: configs, the test guest's kernel
/// after each config that names it, an optional appliance config.
struct Appliance {
    dir: TempDir,
    modules: Vec<(PathBuf, String)>,
    kernel: PathBuf,
}

impl Appliance {
    fn new(label: &str) -> Result<Self, Failure> {
        Ok(Self {
            dir: TempDir::new(label)?,
            modules: Vec::new(),
            kernel: images()?.test_guest,
        })
    }

    /// A `guest-config FILE` module with `text`, followed by the test guest
    /// as `guest-file test-guest.elf`.
    fn guest(&mut self, file: &str, text: &str) -> Result<&mut Self, Failure> {
        self.config_without_kernel(file, text)?;
        self.modules
            .push((self.kernel.clone(), format!("guest-file {KERNEL}")));
        Ok(self)
    }

    /// A `guest-config FILE` module with no `guest-file` after it.
    fn config_without_kernel(&mut self, file: &str, text: &str) -> Result<&mut Self, Failure> {
        let path = self.dir.write(file, text.as_bytes())?;
        self.modules.push((path, format!("guest-config {file}")));
        Ok(self)
    }

    /// The `appliance-config` module.
    fn appliance_config(&mut self, text: &str) -> Result<&mut Self, Failure> {
        let path = self.dir.write("appliance.cfg", text.as_bytes())?;
        self.modules
            .push((path, "appliance-config appliance.cfg".into()));
        Ok(self)
    }

    /// Boots it with `dom0_words` on Dom0's command line.
    fn boot(&self, dom0_words: &str) -> Result<Running, Failure> {
        let modules: Vec<(&Path, &str)> = self
            .modules
            .iter()
            .map(|(path, line)| (path.as_path(), line.as_str()))
            .collect();
        let iso = make_iso_with_modules(&self.dir, &format!("-- {dom0_words}"), &modules)?;
        Qemu::iso(iso).spawn()
    }
}

/// An xl.cfg for the test guest named `name` with command line `extra`,
/// then `more` (further keys, one per line).
fn test_guest(name: &str, extra: &str, more: &str) -> String {
    format!(
        "name = \"{name}\"\ntype = \"pvh\"\nmemory = 32\nkernel = \"{KERNEL}\"\n\
         extra = \"{extra}\"\n{more}"
    )
}

/// Waits for domain `domain`'s verdict, `test-guest: N passed, M failed`,
/// and fails unless it passed at least `at_least` checks and failed none.
fn expect_clean_verdict(qemu: &mut Running, domain: u16, at_least: u64) -> Result<(), Failure> {
    let prefix = format!("(d{domain}) test-guest: ");
    // " failed" too: the line may still be arriving.
    let line = qemu.wait_for_line_with(
        &[&prefix, " passed, ", " failed"],
        boot_timeout(),
        &format!("verdict from domain {domain}"),
    )?;
    match (
        number_after(&line, "test-guest:"),
        number_after(&line, "passed,"),
    ) {
        (Some(passed), Some(0)) if passed >= at_least => Ok(()),
        _ => Err(qemu.failure(format!(
            "domain {domain}'s test guest should pass at least {at_least} checks and fail none: \
             {line:?}"
        ))),
    }
}

/// Attaches to `name`'s console (domain `domain`) and types one byte: a
/// guest in `await-input` goes on to its verdict.
fn type_on_console(qemu: &mut Running, name: &str, domain: u16) -> Result<(), Failure> {
    qemu.wait_for_all(
        &[&format!(
            "(d{domain}) test-guest: waiting for a byte typed on the console"
        )],
        boot_timeout(),
    )?;
    qemu.send(&format!("console {name}\r"))?;
    qemu.wait_for(
        &format!("attached to domain {domain}'s console"),
        boot_timeout(),
    )?;
    qemu.send("x")
}

#[test]
fn an_appliance_config_starts_only_the_guests_it_lists() -> Result<(), Failure> {
    let mut appliance = Appliance::new("toolstack-appliance")?;
    appliance
        .guest("alpha.cfg", &test_guest("alpha", "", ""))?
        .guest("beta.cfg", &test_guest("beta", "", ""))?
        .appliance_config("guests = [ \"beta\" ]\n")?;
    let mut qemu = appliance.boot("exit-when-idle")?;
    qemu.wait_for("dom0: created domain 1 (beta)", boot_timeout())?;
    expect_clean_verdict(&mut qemu, 1, 50)?;
    qemu.wait_for(
        "dom0: domain 1 (beta) shut down (poweroff): destroying it",
        boot_timeout(),
    )?;
    qemu.wait_for(
        "dom0: all guests done (1 powered off, 0 did not)",
        boot_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(&["(alpha)", "created domain 2"])?;
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn bad_guest_configs_are_refused_clearly_and_the_good_guests_run() -> Result<(), Failure> {
    let mut appliance = Appliance::new("toolstack-bad-configs")?;
    appliance
        // Line 3, column 10: a second `=` where a value belongs.
        .guest(
            "syntax.cfg",
            "name = \"broken\"\nkernel = \"test-guest.elf\"\nmemory = = 32\n",
        )?
        .config_without_kernel(
            "no-kernel.cfg",
            "name = \"orphan\"\nmemory = 32\nkernel = \"missing.elf\"\n",
        )?
        .guest(
            "hvm.cfg",
            "name = \"windows\"\ntype = \"hvm\"\nmemory = 32\nkernel = \"test-guest.elf\"\n",
        )?
        .guest("twin-a.cfg", &test_guest("twin", "", ""))?
        .guest("twin-b.cfg", &test_guest("twin", "", ""))?
        .guest("good.cfg", &test_guest("good", "", ""))?;
    // `poweroff`, not `exit-when-idle`: the refusals count as guests that
    // did not run, but the power-off reports success anyway.
    let mut qemu = appliance.boot("poweroff")?;
    // Definitions come first, in module order, then the boot guests start.
    let syntax = qemu.wait_for("dom0: syntax.cfg:", boot_timeout())?;
    if !syntax.contains("syntax.cfg:3:10: ") {
        return Err(qemu.failure(format!(
            "the syntax error should name the file, line 3 and column 10: {syntax:?}"
        )));
    }
    qemu.wait_for(
        "dom0: no-kernel.cfg: kernel \"missing.elf\" is not among the boot modules",
        boot_timeout(),
    )?;
    qemu.wait_for(
        "dom0: hvm.cfg: kernel \"test-guest.elf\": not a Linux bzImage (no setup header) \
         (type = \"hvm\" boots a Linux bzImage directly)",
        boot_timeout(),
    )?;
    // Creates are answered before the guest is built: the second twin is
    // refused (once) while the first is still building.
    qemu.wait_for(
        "dom0: cannot create twin: twin-b.cfg: a guest named \"twin\" already exists",
        boot_timeout(),
    )?;
    qemu.wait_for("dom0: created domain 1 (twin)", boot_timeout())?;
    qemu.wait_for("dom0: created domain 2 (good)", boot_timeout())?;
    expect_clean_verdict(&mut qemu, 1, 50)?;
    expect_clean_verdict(&mut qemu, 2, 50)?;
    qemu.wait_for(
        "dom0: all guests done (2 powered off, 4 did not)",
        boot_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_contains(&[
        "dom0: domain 1 (twin) shut down (poweroff)",
        "dom0: domain 2 (good) shut down (poweroff)",
    ])?;
    qemu.assert_serial_lacks(&["(broken)", "(orphan)", "(windows)", "created domain 3"])?;
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn a_crashed_guest_with_on_crash_preserve_is_kept() -> Result<(), Failure> {
    let mut appliance = Appliance::new("toolstack-preserve")?;
    appliance
        .guest(
            "crasher.cfg",
            &test_guest("crasher", "shutdown=crash", "on_crash = \"preserve\"\n"),
        )?
        // Keeps Dom0 from powering off until the test has looked.
        .guest("holder.cfg", &test_guest("holder", "await-input", ""))?;
    let mut qemu = appliance.boot("exit-when-idle")?;
    qemu.wait_for("dom0: created domain 1 (crasher)", boot_timeout())?;
    expect_clean_verdict(&mut qemu, 1, 50)?;
    qemu.wait_for(
        "dom0: domain 1 (crasher) shut down (crash): keeping it",
        boot_timeout(),
    )?;
    // Kept, and `list` shows it crashed.
    qemu.send("list\r")?;
    let row = qemu.wait_for("crasher ", boot_timeout())?;
    let fields: Vec<&str> = row.split_whitespace().collect();
    match fields[..] {
        ["crasher", "1", "32", _, state, _] if state.contains('c') => {}
        _ => {
            return Err(qemu.failure(format!(
                "`list` should show crasher as domain 1, 32 MiB, crashed: {row:?}"
            )));
        }
    }
    type_on_console(&mut qemu, "holder", 2)?;
    expect_clean_verdict(&mut qemu, 2, 50)?;
    // The kept guest counts as one that did not power off.
    qemu.wait_for(
        "dom0: all guests done (1 powered off, 1 did not)",
        boot_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF_FAILURE, boot_timeout())?;
    qemu.assert_serial_lacks(&["destroyed domain 1", "created domain 3"])?;
    qemu.assert_serial_lacks(TROUBLE)
}

/// The "free memory F KiB" figure of a destroy line.
fn free_memory(line: &str) -> Option<u64> {
    number_after(line, "free memory")
}

#[test]
fn a_guest_with_on_poweroff_restart_comes_back_as_a_new_domain() -> Result<(), Failure> {
    let mut appliance = Appliance::new("toolstack-restart")?;
    appliance.guest(
        "phoenix.cfg",
        &test_guest("phoenix", "await-input", "on_poweroff = \"restart\"\n"),
    )?;
    let mut qemu = appliance.boot("exit-when-idle")?;
    qemu.wait_for("dom0: created domain 1 (phoenix)", boot_timeout())?;
    // The first incarnation powers off when told to...
    type_on_console(&mut qemu, "phoenix", 1)?;
    expect_clean_verdict(&mut qemu, 1, 50)?;
    qemu.wait_for(
        "dom0: domain 1 (phoenix) shut down (poweroff): restarting it",
        boot_timeout(),
    )?;
    let first = qemu.wait_for("dom0: destroyed domain 1 (phoenix)", boot_timeout())?;
    // ...and comes back as a new domain, running from the start.
    // (The restart is logged when it begins, the created line once the
    // new domain is built and unpaused.)
    qemu.wait_for("dom0: restarted as domain 2", boot_timeout())?;
    qemu.wait_for("dom0: created domain 2 (phoenix)", boot_timeout())?;
    qemu.wait_for(
        "(d2) test-guest: waiting for a byte typed on the console",
        boot_timeout(),
    )?;
    // A guest that always restarts would run for ever: the operator ends
    // it from the shell (read even under exit-when-idle).
    qemu.send("destroy phoenix\r")?;
    let second = qemu.wait_for("dom0: destroyed domain 2 (phoenix)", boot_timeout())?;
    // Destroyed while running: a guest that did not power off.
    qemu.wait_for(
        "dom0: all guests done (1 powered off, 1 did not)",
        boot_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF_FAILURE, boot_timeout())?;
    match (free_memory(&first), free_memory(&second)) {
        (Some(first), Some(second)) if first == second && first > 0 => {}
        _ => {
            return Err(qemu.failure(format!(
                "each incarnation's memory should come back: {first:?} then {second:?}"
            )));
        }
    }
    qemu.assert_serial_lacks(&["created domain 3", "(d2) test-guest: PASS console-input"])?;
    qemu.assert_serial_lacks(TROUBLE)
}

#[test]
fn a_guest_wrecking_its_rings_is_cut_off_and_the_rest_goes_on() -> Result<(), Failure> {
    let mut appliance = Appliance::new("toolstack-hostile-rings")?;
    appliance
        .guest(
            "hostile-indices.cfg",
            &test_guest("hostile-indices", "rings=indices", ""),
        )?
        // Waits for typed input at the end, so Dom0 is still up (under
        // exit-when-idle) when the well-behaved guest is created.
        .guest(
            "hostile-protocol.cfg",
            &test_guest("hostile-protocol", "rings=protocol await-input", ""),
        )?
        .guest("good.cfg", &test_guest("good", "", ""))?
        .appliance_config("guests = [ \"hostile-indices\", \"hostile-protocol\" ]\n")?;
    let mut qemu = appliance.boot("exit-when-idle")?;
    // The guests' own view: each step Dom0 had to take, done.
    qemu.wait_for_all(
        &[
            "(d1) test-guest: PASS rings-store-read",
            "(d1) test-guest: PASS rings-console-indices",
            "(d1) test-guest: PASS rings-store-indices",
            "(d1) test-guest: PASS rings-store-not-served",
            "(d2) test-guest: PASS rings-store-read",
            "(d2) test-guest: PASS rings-console-indices",
            "(d2) test-guest: PASS rings-store-flood",
            "(d2) test-guest: PASS rings-store-oversized",
            "(d2) test-guest: PASS rings-store-not-served",
            "(d2) test-guest: waiting for a byte typed on the console",
        ],
        boot_timeout(),
    )?;
    // The operator's view: each fault named, once per guest and ring.
    qemu.assert_serial_contains(&[
        "[hostile-indices] console ring: hello",
        "dom0: console: hostile-indices corrupted its ring indices",
        "[hostile-indices] console ring: served again",
        "dom0: xenstore: domain 1 corrupted its ring indices",
        "[hostile-protocol] console ring: hello",
        "dom0: console: hostile-protocol corrupted its ring indices",
        "[hostile-protocol] console ring: served again",
        "dom0: xenstore: domain 2 broke the protocol",
        "PayloadTooLong { length: 1048576 }",
    ])?;
    for (needle, expected) in [("corrupted its ring indices", 3), ("broke the protocol", 1)] {
        let count = qemu.serial().matches(needle).count();
        if count != expected {
            return Err(qemu.failure(format!(
                "{needle:?} should be said {expected} times, not {count}"
            )));
        }
    }
    expect_clean_verdict(&mut qemu, 1, 50)?;
    qemu.wait_for(
        "dom0: domain 1 (hostile-indices) shut down (poweroff)",
        boot_timeout(),
    )?;

    // A well-behaved guest created afterwards runs as if nothing happened.
    qemu.send("create good\r")?;
    qemu.wait_for("dom0: created domain 3 (good)", boot_timeout())?;
    expect_clean_verdict(&mut qemu, 3, 50)?;
    qemu.wait_for(
        "dom0: domain 3 (good) shut down (poweroff): destroying it",
        boot_timeout(),
    )?;

    // The protocol breaker still runs and powers off cleanly when told.
    type_on_console(&mut qemu, "hostile-protocol", 2)?;
    expect_clean_verdict(&mut qemu, 2, 50)?;
    qemu.wait_for(
        "dom0: all guests done (3 powered off, 0 did not)",
        boot_timeout(),
    )?;
    qemu.expect_exit(EXIT_POWEROFF, boot_timeout())?;
    qemu.assert_serial_lacks(TROUBLE)
}
