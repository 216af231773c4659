//! Placeholder while the test guest is written.
#![no_std]
#![no_main]

baremetal::entry_point!();

#[unsafe(no_mangle)]
extern "C" fn baremetal_main(_magic: u32, _start_info: u32) -> ! {
    baremetal::cpu::halt_forever()
}

#[panic_handler]
fn panic(_panic: &core::panic::PanicInfo<'_>) -> ! {
    baremetal::cpu::halt_forever()
}
