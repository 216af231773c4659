//! A fixed-seed random sequence of everything a guest and the hypervisor
//! can do to an APIC: it must never panic, and the IRR/ISR invariants must
//! hold after every step.

use super::*;

/// xorshift64*: small, deterministic, good enough to pick operations.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    /// A value biased towards the interesting: small, one bit, or anything.
    fn value(&mut self) -> u64 {
        match self.below(4) {
            0 => self.below(0x100),
            1 => 1 << self.below(64),
            2 => self.below(1 << 20),
            _ => self.next(),
        }
    }
}

/// Counts of what the sequence reached, to show it explored.
#[derive(Default)]
struct Coverage {
    injected: u32,
    ended: u32,
    spurious: u32,
    ipis: u32,
    faults: u32,
    mode_changes: u32,
    timer_interrupts: u32,
}

fn check_invariants(lapic: &VirtualLapic, step: usize) {
    let requests = lapic.requests();
    let in_service = lapic.in_service();
    let trigger_modes = lapic.trigger_modes();
    assert_eq!(requests.word(0) & 0xffff, 0, "step {step}: IRR vector < 16");
    assert_eq!(
        in_service.word(0) & 0xffff,
        0,
        "step {step}: ISR vector < 16"
    );
    // Nested delivery only ever adds a higher class: one ISR bit per class.
    let mut classes = [false; 16];
    for vector in in_service.iter() {
        let class = usize::from(vector.priority_class());
        assert!(
            !classes[class],
            "step {step}: two ISR bits in class {class}"
        );
        classes[class] = true;
    }
    for vector in trigger_modes.iter() {
        assert!(
            requests.contains(vector) || in_service.contains(vector),
            "step {step}: TMR bit {vector:?} with no IRR or ISR bit"
        );
    }
    if let Some(highest) = in_service.highest() {
        assert!(lapic.processor_priority() >> 4 >= highest.priority_class());
    }
    if let Some(vector) = lapic.pending_vector() {
        assert!(requests.contains(vector));
        assert!(vector.priority_class() > lapic.processor_priority() >> 4);
        assert!(lapic.is_software_enabled());
    }
    if lapic.mode() == ApicMode::Disabled {
        assert!(requests.is_empty() && in_service.is_empty(), "step {step}");
        assert_eq!(lapic.next_timer_deadline(), None);
    }
    if !lapic.is_software_enabled() {
        for lvt in Lvt::ALL {
            assert_ne!(
                lapic.local_vector(lvt) & LVT_MASKED,
                0,
                "step {step}: {lvt:?}"
            );
        }
    }
    let known = error_status::SEND_ILLEGAL_VECTOR
        | error_status::RECEIVE_ILLEGAL_VECTOR
        | error_status::ILLEGAL_REGISTER_ADDRESS;
    assert_eq!(lapic.error_status() & !known, 0, "step {step}");
}

fn random_message(random: &mut Random) -> InterruptMessage {
    let delivery_mode = [
        DeliveryMode::Fixed,
        DeliveryMode::Fixed,
        DeliveryMode::LowestPriority,
        DeliveryMode::Smi,
        DeliveryMode::Nmi,
        DeliveryMode::Init,
        DeliveryMode::Startup,
        DeliveryMode::ExtInt,
    ][random.below(8) as usize];
    InterruptMessage {
        delivery_mode,
        vector: Vector(random.next() as u8),
        trigger: if random.chance(4) {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        },
    }
}

fn note(action: Option<LapicAction>, coverage: &mut Coverage) {
    match action {
        Some(LapicAction::SendIpi(_)) => coverage.ipis += 1,
        Some(LapicAction::EndOfInterrupt { .. }) => coverage.ended += 1,
        Some(LapicAction::ModeChanged(_)) => coverage.mode_changes += 1,
        None => {}
    }
}

fn run(seed: u64, steps: usize) -> Coverage {
    let mut random = Random(seed);
    let mut lapic = VirtualLapic::new(config(random.below(512) as u32, random.chance(2)));
    let mut now = 0u64;
    let mut coverage = Coverage::default();
    for step in 0..steps {
        now += random.below(300);
        let time = SystemTime::from_nanos(now);
        match random.below(16) {
            0 => {
                let msr = 0x7f0 + random.below(0x120) as u32;
                if lapic.read_msr(msr, time).is_err() {
                    coverage.faults += 1;
                }
            }
            1 | 2 => {
                let msr = if random.chance(2) {
                    X2APIC_MSR_FIRST
                        + [0x08, 0x0b, 0x0f, 0x28, 0x30, 0x32, 0x37, 0x38, 0x3e, 0x3f]
                            [random.below(10) as usize]
                } else {
                    0x7f0 + random.below(0x120) as u32
                };
                let value = random.value();
                match lapic.write_msr(msr, value, time) {
                    Ok(action) => note(action, &mut coverage),
                    Err(_) => coverage.faults += 1,
                }
            }
            3 => {
                let address = DEFAULT_BASE - 0x20 + random.below(0x1040);
                let size = random.below(11) as usize;
                let _ = lapic.mmio_read(GuestPhysAddr(address), size, time);
            }
            4 | 5 => {
                let offset = if random.chance(2) {
                    [
                        0x80, 0xb0, 0xd0, 0xe0, 0xf0, 0x280, 0x300, 0x310, 0x320, 0x370, 0x380,
                        0x3e0,
                    ][random.below(12) as usize]
                } else {
                    random.below(0x1010)
                };
                let size = if random.chance(4) {
                    random.below(11) as usize
                } else {
                    4
                };
                let value = random.value();
                note(
                    lapic.mmio_write(at(offset), size, value, time),
                    &mut coverage,
                );
            }
            6 | 7 => {
                let trigger = if random.chance(3) {
                    TriggerMode::Level
                } else {
                    TriggerMode::Edge
                };
                lapic.accept(Vector(random.next() as u8), trigger);
            }
            8 | 9 => {
                let presented = lapic.pending_vector();
                let deliverable = lapic.highest_deliverable(!random.chance(8), random.chance(8));
                let vector = match deliverable {
                    Some(vector) if !random.chance(10) => vector,
                    _ => Vector(random.next() as u8),
                };
                match lapic.acknowledge(vector) {
                    Acknowledged::Interrupt(acknowledged) => {
                        assert_eq!(Some(acknowledged), presented, "step {step}");
                        assert!(lapic.in_service().contains(acknowledged));
                        coverage.injected += 1;
                    }
                    Acknowledged::Spurious(spurious) => {
                        assert_ne!(Some(vector), presented, "step {step}");
                        assert_eq!(spurious, lapic.spurious_vector());
                        coverage.spurious += 1;
                    }
                }
            }
            10 => {
                let action = match lapic.mode() {
                    ApicMode::X2Apic => lapic.write_msr(0x80b, 0, time).ok().flatten(),
                    _ => lapic.mmio_write(at(0xb0), 4, 0, time),
                };
                note(action, &mut coverage);
            }
            11 => {
                let value = if random.chance(8) {
                    random.next()
                } else {
                    DEFAULT_BASE
                        | [
                            0,
                            APIC_BASE_ENABLE,
                            APIC_BASE_ENABLE | APIC_BASE_X2APIC,
                            APIC_BASE_X2APIC,
                        ][random.below(4) as usize]
                        | if random.chance(2) {
                            APIC_BASE_BOOTSTRAP
                        } else {
                            0
                        }
                };
                match lapic.write_apic_base(value) {
                    Ok(action) => note(action, &mut coverage),
                    Err(_) => coverage.faults += 1,
                }
            }
            12 => {
                if random.chance(8) && lapic.mode() == ApicMode::XApic {
                    // Program the timer as a guest would: unmasked, short.
                    let mode = random.below(3) << 17;
                    lapic.mmio_write(at(0x320), 4, mode | (0x20 + random.below(0xe0)), time);
                    lapic.mmio_write(at(0x380), 4, random.below(2000), time);
                }
                if lapic.poll(time) {
                    coverage.timer_interrupts += 1;
                }
            }
            13 => {
                let message = random_message(&mut random);
                lapic.receive(message);
            }
            14 => {
                let at_time = SystemTime::from_nanos(now + random.below(2000));
                lapic.write_tsc_deadline(random.value(), at_time, time);
                let _ = lapic.tsc_deadline(time);
            }
            _ => {
                lapic.write_cr8(random.below(4));
                let _ = lapic.take_pending_nmi();
                // Guests mostly run with the APIC on: switch it back on often.
                let enable = 0x100 | random.below(0x100);
                match lapic.mode() {
                    ApicMode::X2Apic => note(
                        lapic.write_msr(0x80f, enable, time).ok().flatten(),
                        &mut coverage,
                    ),
                    _ => note(lapic.mmio_write(at(0xf0), 4, enable, time), &mut coverage),
                }
                if lapic.mode() == ApicMode::Disabled {
                    note(
                        lapic
                            .write_apic_base(DEFAULT_BASE | APIC_BASE_ENABLE)
                            .ok()
                            .flatten(),
                        &mut coverage,
                    );
                }
            }
        }
        check_invariants(&lapic, step);
    }
    coverage
}

#[test]
fn random_accesses_never_panic_and_keep_the_invariants() {
    let mut total = Coverage::default();
    for seed in [
        0x5eed_0001,
        0xdead_beef_cafe_f00d,
        0x1234_5678_9abc_def1,
        42,
    ] {
        let coverage = run(seed, 20_000);
        total.injected += coverage.injected;
        total.ended += coverage.ended;
        total.spurious += coverage.spurious;
        total.ipis += coverage.ipis;
        total.faults += coverage.faults;
        total.mode_changes += coverage.mode_changes;
        total.timer_interrupts += coverage.timer_interrupts;
    }
    assert!(total.injected > 100, "injected {}", total.injected);
    assert!(total.ended > 100, "ended {}", total.ended);
    assert!(total.spurious > 100, "spurious {}", total.spurious);
    assert!(total.ipis > 10, "IPIs {}", total.ipis);
    assert!(total.faults > 100, "faults {}", total.faults);
    assert!(
        total.mode_changes > 10,
        "mode changes {}",
        total.mode_changes
    );
    assert!(
        total.timer_interrupts > 0,
        "timer interrupts {}",
        total.timer_interrupts
    );
}
