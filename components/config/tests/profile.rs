//! Board profiles and scenarios: the reference board, and one bad fixture
//! per validation rule (the reference profile with one thing broken).

use config::boot::VmTable;
use config::composition::Region;
use config::profile::*;
use config::vm::{GuestWidth, TimeWindow};
use std::path::{Path, PathBuf};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn boards_dir() -> PathBuf {
    manifest().join("../../boards")
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures").join(name)
}

fn known() -> Known {
    Known::builtin(
        ["bench", "hello", "prober", "spinner"]
            .map(String::from)
            .to_vec(),
    )
}

fn image(guest: &str, arch: GuestWidth) -> PathBuf {
    PathBuf::from(format!("/images/{}/{guest}.bin", arch.name()))
}

fn plan_file(path: &Path, vms: Option<&VmSource>) -> Result<Composition, ProfileError> {
    let text = std::fs::read_to_string(path).unwrap();
    let profile = parse_profile(path, &text)?;
    plan(&profile, vms, &known(), "test", &image)
}

/// The error a bad fixture gives, checked for file, line and field.
#[track_caller]
fn bad(name: &str, line: usize, field: &str) -> ProfileError {
    let path = fixture(&format!("{name}.toml"));
    let err = plan_file(&path, None).expect_err("the fixture must be refused");
    println!("{err}");
    assert_eq!(err.file, path);
    assert_eq!((err.line, err.field.as_str()), (line, field), "{err}");
    assert!(err.column > 0);
    err
}

#[track_caller]
fn says(err: &ProfileError, words: &[&str]) {
    let text = err.to_string();
    for w in words {
        assert!(text.contains(w), "{w:?} not in:\n{text}");
    }
}

#[test]
fn reference_board_plans_to_expected_addresses() {
    let profile = load_board(&boards_dir(), "qemu-virt-a64").unwrap();
    assert_eq!(profile.qemu.as_ref().unwrap().binary, "qemu-system-aarch64");
    let c = plan(&profile, None, &known(), "qemu-virt-a64", &image).unwrap();
    assert_eq!(
        (c.board.as_str(), c.name.as_str()),
        ("qemu-virt-a64", "qemu-virt-a64")
    );
    assert_eq!(
        c.ram,
        Region {
            base: 0x4000_0000,
            size: 1 << 30
        }
    );
    assert_eq!(
        c.hypervisor,
        Region {
            base: 0x4040_0000,
            size: 8 << 20
        }
    );
    assert_eq!(c.time_slice_us, 2000);
    assert_eq!(c.uart.reg_shift, 0);
    assert_eq!(c.gic.hyp_interface, Some(0x0803_0000));
    let vms: Vec<_> = c.vms.iter().map(|v| (&*v.name, v.ram)).collect();
    assert_eq!(
        vms,
        [
            (
                "hello",
                Region {
                    base: 0x40C0_0000,
                    size: 16 << 20
                }
            ),
            (
                "spinner",
                Region {
                    base: 0x41C0_0000,
                    size: 16 << 20
                }
            ),
        ]
    );
    assert_eq!(
        c.guest_image(&c.vms[1]),
        Path::new("/images/aarch64/spinner.bin")
    );
    // rr takes no weights, caps, pins or windows: the defaults.
    assert!(c
        .vms
        .iter()
        .all(|v| (v.weight, v.cap_percent, v.cpu) == (256, 0, None)));
    assert!(c.windows.is_empty());
    assert_eq!(
        c.features(),
        [
            "sched-rr",
            "gic-v2",
            "vgic-v2",
            "drv-pl011",
            "drv-virtio-blk"
        ]
    );
    // The component items build.rs writes, each the table row's path (the
    // disk's `probe_disk` is checked in qemu_boards_have_the_virtio_disk).
    let items = c.component_items().unwrap();
    assert!(items.starts_with(
        "pub type Scheduler = sched_rr::Component;\n\
         pub type Gic = drv_gicv2::Component;\n\
         pub type Vgic = vgic_v2::Component;\n\
         pub type Uart = drv_pl011::Component;\n\
         pub type Disk = drv_virtio_blk::Component;\n"
    ));
    let pv = items.find("pub const PV").unwrap();
    assert_eq!(
        &items[pv..],
        "pub const PV: &str = \"console\";\n\
         /// The emulated device of component row `kind`, for a VM.\n\
         #[allow(unused_variables, clippy::match_single_binding)]\n\
         pub fn new_device(kind: &str, setup: hv::device::Setup) -> Option<Result<alloc::boxed::Box<dyn hv::device::MmioDevice>, hv::device::SetupError>> {\n    \
         match kind {\n        _ => None,\n    }\n}\n"
    );
    // What xtask writes, the image's build script reads back.
    assert_eq!(Composition::from_toml(&c.to_toml()).unwrap(), c);
}

/// The VMs and windows of the composition xtask writes are the image's VM
/// table: read back by the build script, encoded, and decoded at boot, they
/// are what the plan made.
#[test]
fn composition_vms_are_the_boot_table() {
    for c in [
        plan_file(&boards_dir().join("qemu-virt-a64.toml"), None).unwrap(),
        plan_file(&fixture("mixed_width.toml"), None).unwrap(),
        plan_file(&fixture("sched_arinc653.toml"), None).unwrap(),
    ] {
        let read = Composition::from_toml(&c.to_toml()).unwrap();
        let bytes = read.vm_table();
        let table = VmTable::decode(&bytes).unwrap();
        assert_eq!(table.vms, c.vms);
        assert_eq!(table.windows, c.windows);
    }
}

#[test]
fn placed_vms_step_over_fixed_ones() {
    let c = plan_file(&fixture("placement_skips_fixed.toml"), None).unwrap();
    assert_eq!(c.vms[0].ram.base, 0x40C0_0000);
    assert_eq!(c.vms[1].ram.base, 0x41C0_0000);
}

#[test]
fn boards_are_listed_sorted() {
    let boards = list_boards(&boards_dir());
    assert!(boards.contains(&"qemu-virt-a64".to_string()));
    assert!(boards.windows(2).all(|w| w[0] < w[1]));
}

// Rule 1
#[test]
fn toml_syntax_error_is_located() {
    let err = bad("syntax", 8, "");
    assert_eq!(err.column, 8);
    says(&err, &["TOML syntax error"]);
}

// Rule 2
#[test]
fn unknown_field_lists_fields_and_suggests() {
    let err = bad("unknown_field", 16, "memory");
    says(
        &err,
        &[
            "unknown field 'hypervsior'",
            "ram, load-address, hypervisor",
            "did you mean 'hypervisor'?",
        ],
    );
}

#[test]
fn missing_field_names_it() {
    let err = bad("missing_field", 4, "board");
    says(&err, &["'cpus' is missing", "add cpus = ... in [board]"]);
}

#[test]
fn wrong_type_names_the_field() {
    let err = bad("wrong_type", 8, "board.cpus");
    says(&err, &["\"one\"", "expected a whole number"]);
}

#[test]
fn unknown_table_suggests() {
    let err = bad("unknown_table", 34, "");
    assert_eq!(err.column, 2);
    says(
        &err,
        &[
            "unknown field 'qemuu'; the file takes: board,",
            "did you mean 'qemu'?",
        ],
    );
}

#[test]
fn unknown_arch_suggests() {
    let err = bad("unknown_arch", 7, "board.arch");
    says(
        &err,
        &["'aarch46'", "aarch64, armv7a", "did you mean 'aarch64'?"],
    );
}

// Rule 3
#[test]
fn unknown_board_lists_boards() {
    let err = load_board(&boards_dir(), "qemu-virt-a46").unwrap_err();
    assert_eq!(err.line, 0);
    says(
        &err,
        &[
            "no board 'qemu-virt-a46'",
            "qemu-virt-a64",
            "did you mean 'qemu-virt-a64'?",
        ],
    );
}

#[test]
fn board_name_must_match_file_name() {
    let err = load_board(&fixture("boards"), "renamed").unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (5, "board.name"));
    says(
        &err,
        &["'qemu-virt-a64' does not match the file name 'renamed.toml'"],
    );
}

// Rule 4
#[test]
fn overlapping_vms_are_refused() {
    let err = bad("vm_overlap", 56, "vm 'spinner' base");
    says(&err, &["overlaps vm 'hello' (0x40e00000..0x41e00000)"]);
}

#[test]
fn vm_overlapping_hypervisor_is_refused() {
    let err = bad("vm_overlaps_hypervisor", 49, "vm 'hello' base");
    says(
        &err,
        &[
            "overlaps the hypervisor (0x40400000..0x40c00000)",
            "0x40c00000",
        ],
    );
}

// Rule 5
#[test]
fn vm_outside_ram_is_refused() {
    let err = bad("vm_outside_ram", 49, "vm 'hello' base");
    says(
        &err,
        &["0x7fe00000..0x80e00000 is outside RAM (0x40000000..0x80000000)"],
    );
}

#[test]
fn hypervisor_outside_ram_is_refused() {
    let err = bad("hypervisor_outside_ram", 14, "memory.load-address");
    says(&err, &["0x7fc00000..0x80400000 is not inside RAM"]);
}

// Rule 6
#[test]
fn too_much_memory_says_how_much() {
    let err = bad("too_much_memory", 54, "vm 'spinner' memory");
    says(
        &err,
        &[
            "hypervisor (8 MiB)",
            "VMs (1040 MiB)",
            "ask for 1048 MiB",
            "RAM is 1 GiB",
        ],
    );
}

// Rule 7
#[test]
fn zero_vcpus_is_refused() {
    let err = bad("zero_vcpus", 47, "vm 'hello' vcpus");
    says(&err, &["at least one vCPU"]);
}

#[test]
fn at_most_eight_vcpus_per_vm() {
    let err = bad("nine_vcpus", 47, "vm 'hello' vcpus");
    says(
        &err,
        &[
            "9 vCPUs asked for; a VM has at most 8",
            "vcpus = 8 or fewer",
        ],
    );
}

// Rule 8
#[test]
fn unknown_scheduler_suggests() {
    let err = bad("unknown_scheduler", 41, "compose.scheduler");
    says(
        &err,
        &[
            "unknown scheduler 'rrr'",
            "schedulers there are: rr",
            "did you mean 'rr'?",
        ],
    );
}

#[test]
fn unknown_uart_driver_suggests() {
    let err = bad("unknown_uart_driver", 19, "uart.driver");
    says(
        &err,
        &[
            "unknown UART driver 'pl01l'",
            "pl011",
            "did you mean 'pl011'?",
        ],
    );
}

#[test]
fn pv_is_not_a_setting() {
    let err = bad("pv_set", 43, "compose.pv");
    assert_eq!(err.column, 6);
    says(
        &err,
        &[
            "pv is not a setting any more: every image has the PV console",
            "help: remove pv",
        ],
    );
}

#[test]
fn unknown_guest_suggests() {
    let err = bad("unknown_guest", 52, "vm 'spinner' guest");
    says(
        &err,
        &[
            "unknown guest 'spinnr'",
            "bench, hello, prober, spinner",
            "did you mean 'spinner'?",
        ],
    );
}

// Rule 9
#[test]
fn unaligned_vm_base_is_refused() {
    let err = bad("vm_base_unaligned", 49, "vm 'hello' base");
    says(
        &err,
        &[
            "0x41100000 is not 2 MiB aligned",
            "0x41000000 or 0x41200000",
        ],
    );
}

#[test]
fn vm_memory_in_4kib_pages() {
    let err = bad("vm_memory_unaligned", 48, "vm 'hello' memory");
    says(
        &err,
        &[
            "6 KiB is not a multiple of 4 KiB of at least 16 KiB",
            "\"16KiB\"",
        ],
    );
}

// Rule 10
#[test]
fn duplicate_vm_names_are_refused() {
    let err = bad("duplicate_vm_names", 51, "vm 'hello' name");
    says(&err, &["already on line 45"]);
}

#[test]
fn vm_name_characters_are_checked() {
    let err = bad("vm_name_bad", 51, "vm 'Spinner_1' name");
    says(&err, &["other than a-z, 0-9 and '-'"]);
}

#[test]
fn vm_name_length_is_checked() {
    let err = bad(
        "vm_name_long",
        51,
        "vm 'spinner-spinner-spinner-spinner-1' name",
    );
    says(&err, &["33 bytes long, more than 31"]);
}

#[test]
fn empty_vm_name_is_refused() {
    let err = bad("vm_name_empty", 51, "vm #2 name");
    says(&err, &["name is empty"]);
}

#[test]
fn long_cmdline_is_refused() {
    let err = bad("cmdline_long", 55, "vm 'spinner' cmdline");
    says(&err, &["128 bytes long, more than 127"]);
}

#[test]
fn no_vms_is_refused() {
    let err = bad("no_vms", 43, "vm");
    says(&err, &["no VMs", "[[vm]]"]);
}

// Rule 11
#[test]
fn bad_size_names_units() {
    let err = bad("bad_size", 16, "memory.hypervisor");
    says(
        &err,
        &[
            "unknown size unit \"MB\"",
            "KiB, MiB, GiB",
            "did you mean \"8MiB\"?",
        ],
    );
}

#[test]
fn bad_duration_names_units() {
    let err = bad("bad_duration", 42, "compose.time-slice");
    says(&err, &["unknown unit \"msec\"", "us, ms, s"]);
}

#[test]
fn gic_version_must_be_2_or_3() {
    let err = bad("gic_version", 23, "gic.version");
    says(&err, &["GIC version 4 is not supported"]);
}

#[test]
fn gicv2_needs_its_interfaces() {
    let err = bad("gicv2_missing_hyp_interface", 23, "gic.hyp-interface");
    says(&err, &["hyp-interface is missing: a GICv2 needs", "GICH"]);
}

#[test]
fn gicv3_needs_redistributor() {
    let err = bad("gicv3_missing_redistributor", 23, "gic.redistributor");
    says(&err, &["redistributor is missing"]);
}

// Rule 12 and the cheap extras
#[test]
fn load_address_page_aligned() {
    let err = bad("load_address_unaligned", 14, "memory.load-address");
    says(
        &err,
        &[
            "0x40400800 is not 4 KiB aligned",
            "0x40400000 or 0x40401000",
        ],
    );
}

#[test]
fn interrupts_do_not_collide() {
    let err = bad("irq_conflict", 32, "timer.virt-irq");
    says(&err, &["INTID 26 is also timer.hyp-irq"]);
}

#[test]
fn timer_interrupts_are_ppis() {
    let err = bad("irq_not_ppi", 31, "timer.hyp-irq");
    says(&err, &["INTID 42 is not a PPI"]);
}

#[test]
fn devices_are_outside_ram() {
    let err = bad("uart_in_ram", 20, "uart.base");
    says(&err, &["0x40001000 is inside RAM"]);
}

#[test]
fn reg_shift_is_bounded() {
    let err = bad("reg_shift", 21, "uart.reg-shift");
    says(&err, &["5 is more than 3"]);
}

#[test]
fn reg_io_width_is_1_or_4() {
    let err = bad("reg_io_width", 22, "uart.reg-io-width");
    says(&err, &["3 is not 1 or 4"]);
}

#[test]
fn reg_io_width_is_for_ns16550() {
    let err = bad("reg_io_width_pl011", 21, "uart.reg-io-width");
    says(&err, &["the pl011 driver has fixed 32-bit registers"]);
}

#[test]
fn vm_width_defaults_to_the_host_and_may_be_32_bit() {
    let c = plan_file(&fixture("mixed_width.toml"), None).unwrap();
    let widths: Vec<_> = c.vms.iter().map(|vm| vm.width).collect();
    assert_eq!(widths, [GuestWidth::Aarch64, GuestWidth::Aarch32]);
    assert_eq!(
        c.guest_image(&c.vms[1]),
        Path::new("/images/aarch32/hello.bin")
    );
    let a15 = load_board(&boards_dir(), "qemu-virt-a15").unwrap();
    let c = plan(&a15, None, &known(), "a15", &image).unwrap();
    assert!(c.vms.iter().all(|vm| vm.width == GuestWidth::Aarch32));
}

#[test]
fn armv7_host_refuses_64_bit_guests() {
    let err = bad("armv7_64bit_guest", 47, "vm 'hello' arch");
    says(&err, &["an ARMv7-A host cannot run a 64-bit guest"]);
}

#[test]
fn aarch32_guests_need_gicv2() {
    let err = bad("aarch32_on_gicv3", 47, "vm 'hello' arch");
    says(&err, &["32-bit guests need a GICv2 board"]);
}

// Scenarios
#[test]
fn scenario_parses() {
    let s = load_scenario(&fixture("scenarios/hello.toml")).unwrap();
    assert_eq!(
        (s.name.as_str(), s.board.as_str()),
        ("hello", "qemu-virt-a64")
    );
    assert_eq!(s.timeout, std::time::Duration::from_secs(60));
    assert_eq!(
        s.expect,
        [Expect::from("tessera"), Expect::from("[hello] hello")]
    );
    assert_eq!(s.forbid, ["panic"]);
    assert!(!s.icount);
    let profile = s.load_board(&boards_dir()).unwrap();
    let c = plan(
        &profile,
        s.vms.as_ref(),
        &known(),
        "qemu-virt-a64-hello",
        &image,
    )
    .unwrap();
    assert_eq!(c.vms.len(), 1);
    assert_eq!(
        c.vms[0].ram,
        Region {
            base: 0x40C0_0000,
            size: 32 << 20
        }
    );
    assert_eq!(c.vms[0].cmdline, "loud");
}

#[test]
fn scenario_defaults() {
    let s = load_scenario(&fixture("scenarios/defaults.toml")).unwrap();
    assert!(s.icount && s.forbid.is_empty() && s.vms.is_none());
    assert_eq!(s.timeout, std::time::Duration::from_millis(500));
}

#[test]
fn scenario_vm_error_points_at_scenario() {
    let path = fixture("scenarios/bad_vm.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!((err.file.as_path(), err.line), (path.as_path(), 10));
    assert_eq!(err.field, "vm 'hello' vcpus");
}

#[test]
fn scenario_vm_layout_error_points_at_scenario() {
    let path = fixture("scenarios/overlap.toml");
    let s = load_scenario(&path).unwrap();
    let profile = s.load_board(&boards_dir()).unwrap();
    let err = plan(&profile, s.vms.as_ref(), &known(), "x", &image).unwrap_err();
    assert_eq!((err.file.as_path(), err.line), (path.as_path(), 19));
    says(&err, &["overlaps vm 'a'"]);
}

#[test]
fn scenario_expect_takes_any_order_groups() {
    let s = load_scenario(&fixture("scenarios/any_order.toml")).unwrap();
    assert_eq!(
        s.expect,
        [
            Expect::from("tessera"),
            Expect::AnyOrder(vec!["VM a exited".into(), "VM b exited".into()]),
            Expect::from("powering off"),
        ]
    );
    let err = load_scenario(&fixture("scenarios/empty_group.toml")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (5, "expect"));
    says(&err, &["an expected line is empty"]);
}

#[test]
fn scenario_runs_on_each_listed_board() {
    let s = load_scenario(&fixture("scenarios/two_boards.toml")).unwrap();
    assert_eq!(s.boards, ["qemu-virt-a64", "qemu-virt-a15"]);
    assert_eq!(s.board, "qemu-virt-a64");
    let a15 = s.on_board("qemu-virt-a15");
    let profile = a15.load_board(&boards_dir()).unwrap();
    let c = a15.plan(&profile, &known(), "a15", &image).unwrap();
    assert_eq!(c.arch, config::composition::Arch::Armv7a);
    assert!(c.vms.iter().all(|vm| vm.width == GuestWidth::Aarch32));
}

#[test]
fn scenario_needs_a_board() {
    let path = fixture("scenarios/no_board.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (2, "board"));
    says(&err, &["a board name is empty"]);
}

#[test]
fn scenario_unknown_board_points_at_scenario() {
    let path = fixture("scenarios/unknown_board.toml");
    let s = load_scenario(&path).unwrap();
    let err = s.load_board(&boards_dir()).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.column),
        (path.as_path(), 2, 9)
    );
    says(&err, &["did you mean 'qemu-virt-a64'?"]);
}

#[test]
fn scenario_must_expect_something() {
    let path = fixture("scenarios/no_expect.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (5, "expect"));
}

#[test]
fn scenario_unknown_selftest_is_refused() {
    let path = fixture("scenarios/bad_selftest.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 4, "selftest")
    );
    says(&err, &["unknown self-test `el2-faults`"]);
    assert!(err.help.as_deref().unwrap_or("").contains("el2-fault"));
}

// Schedulers: the choice of scheduler and what it takes from the profile.
#[test]
fn credit_takes_weights_caps_and_pins() {
    let c = plan_file(&fixture("sched_credit.toml"), None).unwrap();
    assert_eq!(c.scheduler, "credit");
    let vms: Vec<_> = c
        .vms
        .iter()
        .map(|v| (&*v.name, v.weight, v.cap_percent, v.cpu))
        .collect();
    assert_eq!(
        vms,
        [("hello", 512, 50, Some(1)), ("spinner", 256, 0, None)]
    );
    assert!(c.windows.is_empty());
    assert_eq!(
        c.features(),
        ["sched-credit", "gic-v2", "vgic-v2", "drv-pl011"]
    );
    assert_eq!(Composition::from_toml(&c.to_toml()).unwrap(), c);
}

#[test]
fn static_gives_every_vm_a_cpu() {
    let c = plan_file(&fixture("sched_static.toml"), None).unwrap();
    // spinner is pinned to CPU 0, so hello gets the free CPU 1.
    let cpus: Vec<_> = c.vms.iter().map(|v| (&*v.name, v.cpu)).collect();
    assert_eq!(cpus, [("hello", Some(1)), ("spinner", Some(0))]);
    assert!(c.vms.iter().all(|v| v.weight == 256 && v.cap_percent == 0));
    assert_eq!(c.features()[0], "sched-static");
    assert_eq!(Composition::from_toml(&c.to_toml()).unwrap(), c);
}

#[test]
fn arinc653_plans_the_major_frame() {
    let c = plan_file(&fixture("sched_arinc653.toml"), None).unwrap();
    assert_eq!(
        c.windows,
        [
            TimeWindow {
                vm: 0,
                length_us: 10_000
            },
            TimeWindow {
                vm: 1,
                length_us: 5_000
            },
            TimeWindow {
                vm: 0,
                length_us: 2_500
            },
        ]
    );
    assert!(c.vms.iter().all(|v| v.cpu.is_none()));
    assert_eq!(c.features()[0], "sched-arinc653");
    assert_eq!(Composition::from_toml(&c.to_toml()).unwrap(), c);
}

#[test]
fn all_schedulers_are_known() {
    assert_eq!(known().schedulers, ["rr", "credit", "static", "arinc653"]);
}

#[test]
fn weight_needs_credit() {
    let err = bad("weight_not_credit", 49, "vm 'hello' weight");
    says(
        &err,
        &[
            "weight and cap only apply to the credit scheduler; this profile uses rr",
            "remove weight, or write scheduler = \"credit\"",
        ],
    );
}

#[test]
fn cap_needs_credit() {
    let err = bad("cap_not_credit", 55, "vm 'spinner' cap");
    says(
        &err,
        &[
            "only apply to the credit scheduler; this profile uses static",
            "remove cap",
        ],
    );
}

#[test]
fn weight_is_bounded() {
    let err = bad("weight_out_of_range", 49, "vm 'hello' weight");
    says(
        &err,
        &["weight 70000 is outside 1..=65535", "default is 256"],
    );
}

#[test]
fn cap_is_a_percentage() {
    let err = bad("cap_out_of_range", 55, "vm 'spinner' cap");
    says(&err, &["cap 150 is outside 1..=100", "percent of one CPU"]);
}

#[test]
fn arinc653_needs_windows() {
    let err = bad("windows_missing", 41, "compose.scheduler");
    says(
        &err,
        &[
            "compose.windows is missing",
            "windows = [{ vm = \"hello\", length = \"10ms\" }, { vm = \"spinner\", length = \"10ms\" }]",
        ],
    );
}

#[test]
fn windows_need_arinc653() {
    let err = bad("windows_not_arinc653", 43, "compose.windows");
    says(
        &err,
        &[
            "ARINC 653 major frame, but this profile uses rr",
            "remove windows, or write scheduler = \"arinc653\"",
        ],
    );
}

#[test]
fn window_names_a_vm() {
    let err = bad("window_unknown_vm", 43, "compose.windows #2 vm");
    says(
        &err,
        &[
            "no VM named 'spiner'; the VMs are: hello, spinner",
            "did you mean 'spinner'?",
        ],
    );
}

#[test]
fn window_is_not_empty() {
    let err = bad("window_zero_length", 43, "compose.windows #2 length");
    says(&err, &["the window is zero long", "\"10ms\""]);
}

#[test]
fn every_vm_has_a_window() {
    let err = bad("vm_without_window", 52, "vm 'spinner' name");
    says(
        &err,
        &[
            "vm 'spinner' has no window in compose.windows, so it would never run",
            "add { vm = \"spinner\", length = \"10ms\" }",
        ],
    );
}

/// The profile with a scenario's VMs in place of its own.
fn plan_with_scenario(profile: &str, scenario: &str) -> Result<Composition, ProfileError> {
    let s = load_scenario(&fixture(scenario)).unwrap();
    plan_file(&fixture(profile), s.vms.as_ref())
}

#[test]
fn windows_are_checked_against_scenario_vms() {
    let path = fixture("scenarios/arinc653_extra_vm.toml");
    let err =
        plan_with_scenario("sched_arinc653.toml", "scenarios/arinc653_extra_vm.toml").unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 21, "vm 'late' name")
    );
    says(&err, &["has no window", "sched_arinc653.toml"]);

    let err = plan_with_scenario("sched_arinc653.toml", "scenarios/arinc653_renamed_vms.toml")
        .unwrap_err();
    assert_eq!(
        (err.file.clone(), err.line, err.field.as_str()),
        (fixture("sched_arinc653.toml"), 44, "compose.windows #1 vm")
    );
    says(
        &err,
        &[
            "no VM named 'hello'; the VMs (from ",
            "arinc653_renamed_vms.toml) are: hullo",
            "did you mean 'hullo'?",
        ],
    );
}

#[test]
fn static_needs_a_cpu_per_vcpu() {
    let err = bad("static_too_many_vcpus", 59, "vm 'bench' vcpus");
    says(
        &err,
        &[
            "static runs one vCPU per CPU: 3 vCPUs, 2 CPUs",
            "run fewer VMs",
        ],
    );
}

#[test]
fn pinned_cpu_exists() {
    let err = bad("static_cpu_out_of_range", 55, "vm 'spinner' cpu");
    says(
        &err,
        &[
            "there is no CPU 2: the board has CPUs 0 to 1 (board.cpus = 2)",
            "leave cpu out",
        ],
    );
}

#[test]
fn static_pins_one_vm_per_cpu() {
    let err = bad("static_same_cpu", 56, "vm 'spinner' cpu");
    says(
        &err,
        &[
            "vm 'hello' is pinned to CPU 1 too; static runs one vCPU per CPU",
            "CPUs of its own",
        ],
    );
}

/// vCPU n of a pinned VM runs on its CPU + n: a 2-vCPU VM pinned to the
/// last CPU would put vCPU 1 on a CPU that does not exist (credit then
/// never ran it: Linux waited 5 s for its CPU 1 and gave up).
#[test]
fn a_pinned_vms_last_vcpu_needs_a_cpu_too() {
    let err = bad("credit_vcpus_past_last_cpu", 51, "vm 'hello' cpu");
    says(
        &err,
        &[
            "the VM's 2 vCPUs are pinned from CPU 1 on (vCPU n to CPU 1 + n): there is no CPU 2; the board has 2",
            "pin it to CPU 0 at most",
        ],
    );
}

#[test]
fn static_gives_an_unpinned_vm_its_cpus_in_a_row() {
    let c = plan_file(&fixture("static_vcpus_in_a_row.toml"), None).unwrap();
    // spinner has CPU 1, so hello's two vCPUs get CPUs 2 and 3, not 0 and 1.
    let cpus: Vec<_> = c.vms.iter().map(|v| (&*v.name, v.cpu)).collect();
    assert_eq!(cpus, [("hello", Some(2)), ("spinner", Some(1))]);
}

#[test]
fn static_needs_free_cpus_in_a_row() {
    let err = bad("static_no_cpus_in_a_row", 47, "vm 'hello' vcpus");
    says(&err, &["no 2 free CPUs in a row", "CPUs in a row"]);
}

#[test]
fn static_sees_a_clash_with_any_vcpu_of_a_pinned_vm() {
    let err = bad("static_vcpu_range_clash", 56, "vm 'spinner' cpu");
    says(&err, &["vm 'hello' is pinned to CPU 1 too"]);
}

#[test]
fn cpu_needs_a_pinning_scheduler() {
    let err = bad("cpu_not_pinning", 55, "vm 'spinner' cpu");
    says(
        &err,
        &[
            "only the credit and static schedulers do; this profile uses rr",
            "remove cpu",
        ],
    );
}

// A scenario's [compose] over its board's.
fn plan_scenario(scenario: &str, board: Option<&str>) -> Result<Composition, ProfileError> {
    let s = load_scenario(&fixture(scenario)).unwrap();
    let profile = match board {
        Some(board) => {
            let path = fixture(board);
            parse_profile(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
        }
        None => s.load_board(&boards_dir()).unwrap(),
    };
    s.plan(&profile, &known(), "test", &image)
}

#[test]
fn scenario_compose_replaces_the_boards() {
    let c = plan_scenario("scenarios/compose_override.toml", None).unwrap();
    assert_eq!(c.board, "qemu-virt-a64");
    assert_eq!(c.scheduler, "arinc653");
    assert_eq!(c.time_slice_us, 1000);
    let pv: Vec<_> = c
        .components()
        .unwrap()
        .iter()
        .filter(|x| x.kind == config::components::Kind::Pv)
        .map(|x| x.name)
        .collect();
    assert_eq!(pv, ["console"]);
    assert_eq!(
        c.windows,
        [
            TimeWindow {
                vm: 0,
                length_us: 5000
            },
            TimeWindow {
                vm: 1,
                length_us: 10_000
            }
        ]
    );
    // Without its [compose], the board's applies.
    let s = load_scenario(&fixture("scenarios/hello.toml")).unwrap();
    let profile = s.load_board(&boards_dir()).unwrap();
    let c = s.plan(&profile, &known(), "test", &image).unwrap();
    assert_eq!((c.scheduler.as_str(), c.time_slice_us), ("rr", 2000));
}

#[test]
fn scenario_scheduler_error_points_at_scenario() {
    let path = fixture("scenarios/compose_bad_scheduler.toml");
    let err = plan_scenario("scenarios/compose_bad_scheduler.toml", None).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.column, err.field.as_str()),
        (path.as_path(), 8, 13, "compose.scheduler")
    );
    says(
        &err,
        &["unknown scheduler 'credits'", "did you mean 'credit'?"],
    );
}

#[test]
fn scenario_windows_name_scenario_vms() {
    let path = fixture("scenarios/compose_window_unknown_vm.toml");
    let err = plan_scenario("scenarios/compose_window_unknown_vm.toml", None).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 11, "compose.windows #2 vm")
    );
    says(&err, &["no VM named 'c'; the VMs are: a, b"]);
}

#[test]
fn scenario_scheduler_is_named_in_errors_about_board_vms() {
    // The board's VM has a weight; the scenario chose rr.
    let err = plan_scenario(
        "scenarios/compose_rr_over_credit.toml",
        Some("sched_credit.toml"),
    )
    .unwrap_err();
    assert_eq!(
        (err.file.clone(), err.line, err.field.as_str()),
        (fixture("sched_credit.toml"), 49, "vm 'hello' weight")
    );
    says(
        &err,
        &[
            "only apply to the credit scheduler; scenario ",
            "compose_rr_over_credit.toml uses rr",
        ],
    );

    // Windows from the scenario, scheduler still the board's.
    let path = fixture("scenarios/compose_windows_only.toml");
    let err = plan_scenario("scenarios/compose_windows_only.toml", None).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 9, "compose.windows")
    );
    says(
        &err,
        &["but its board profile ", "qemu-virt-a64.toml uses rr"],
    );
}

#[test]
fn scenario_cannot_set_pv() {
    let path = fixture("scenarios/compose_pv.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 9, "compose.pv")
    );
    says(&err, &["pv is not a setting any more", "remove pv"]);
}

// The vGIC follows the GIC: `[compose] vgic` is refused, saying which it is.

#[test]
fn vgic_v3_on_a_gicv2_is_refused() {
    let err = bad("vgic_v3_on_v2", 42, "compose.vgic");
    says(
        &err,
        &[
            "vgic v3 cannot be: the vGIC follows [gic] version, which is 2 (",
            "vgic_v3_on_v2.toml:22), so it is v2",
            "help: remove vgic",
        ],
    );
}

#[test]
fn vgic_v2_on_a_gicv3_is_refused() {
    let err = bad("gicv3_vgic_v2", 40, "compose.vgic");
    says(
        &err,
        &[
            "vgic v2 cannot be: the vGIC follows [gic] version, which is 3 (",
            "gicv3_vgic_v2.toml:22), so it is v3",
        ],
    );
}

#[test]
fn vgic_as_a_number_is_refused() {
    let err = bad("vgic_unknown", 42, "compose.vgic");
    says(&err, &["vgic 3 cannot be", "so it is v2", "remove vgic"]);
}

#[test]
fn vgic_is_derived_from_the_gic() {
    let c = plan_file(&fixture("gicv3.toml"), None).unwrap();
    assert_eq!(c.gic.version, 3);
    assert_eq!(c.gic.redistributor, Some(0x080a_0000));
    assert_eq!(c.features(), ["sched-rr", "gic-v3", "vgic-v3", "drv-pl011"]);
    // Naming the vGIC the GIC implies is refused too: the knob is gone.
    let err = bad("gicv3_vgic_v3", 40, "compose.vgic");
    says(
        &err,
        &["vgic is not a setting any more", "so it is v3 anyway"],
    );
}

#[test]
fn scenario_cannot_set_vgic() {
    for (name, words) in [
        ("vgic_v3_on_v2", "vgic v3 cannot be"),
        ("vgic_v2", "so it is v2 anyway"),
    ] {
        let path = fixture(&format!("scenarios/{name}.toml"));
        let err = plan_scenario(&format!("scenarios/{name}.toml"), None).unwrap_err();
        assert_eq!(
            (err.file.as_path(), err.line, err.field.as_str()),
            (path.as_path(), 8, "compose.vgic")
        );
        says(&err, &[words, "qemu-virt-a64.toml:", "remove vgic"]);
    }
}

// A scenario's CPU count over its board's.

#[test]
fn scenario_cpus_replaces_the_boards() {
    let c = plan_scenario("scenarios/cpus_static.toml", None).unwrap();
    assert_eq!((c.cpus, c.scheduler.as_str()), (2, "static"));
    let cpus: Vec<_> = c.vms.iter().map(|v| v.cpu).collect();
    assert_eq!(cpus, [Some(1), Some(0)]);
    // Without it, the board's one CPU takes one static VM.
    let path = fixture("scenarios/cpus_static_one_cpu.toml");
    let err = plan_scenario("scenarios/cpus_static_one_cpu.toml", None).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 19, "vm 'b' vcpus")
    );
    says(&err, &["2 vCPUs, 1 CPUs"]);
    // The board's count stays where the scenario does not say.
    let c = plan_scenario("scenarios/hello.toml", None).unwrap();
    assert_eq!(c.cpus, 1);
}

#[test]
fn scenario_cpus_bound_the_pins() {
    let path = fixture("scenarios/cpus_pin_out_of_range.toml");
    let err = plan_scenario("scenarios/cpus_pin_out_of_range.toml", None).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 22, "vm 'b' cpu")
    );
    says(
        &err,
        &["there is no CPU 2: the board has CPUs 0 to 1 (cpus = 2 in scenario "],
    );
}

#[test]
fn scenario_cpus_is_bounded() {
    for (name, n) in [("cpus_zero", 0), ("cpus_nine", 9)] {
        let path = fixture(&format!("scenarios/{name}.toml"));
        let err = load_scenario(&path).unwrap_err();
        assert_eq!(
            (err.file.as_path(), err.line, err.field.as_str()),
            (path.as_path(), 6, "cpus")
        );
        says(&err, &[&format!("{n} CPUs is outside 1..=8"), "QEMU -smp"]);
    }
}

#[test]
fn qemu_boards_have_the_virtio_disk() {
    for board in ["qemu-virt-a64", "qemu-virt-a64-gicv3", "qemu-virt-a15"] {
        let profile = load_board(&boards_dir(), board).unwrap();
        let c = plan(&profile, None, &known(), board, &image).unwrap();
        let disk = c.disk.as_ref().expect("the QEMU boards have a disk");
        assert_eq!(
            (disk.driver.as_str(), disk.base, disk.irq),
            ("virtio-blk", 0x0a00_3e00, 79),
            "{board}"
        );
        assert!(c.features().iter().any(|f| f == "drv-virtio-blk"));
        let items = c.component_items().unwrap();
        assert!(items.contains("pub type Disk = drv_virtio_blk::Component;"));
        assert!(items.contains("Disk::at(0xa003e00)"), "{items}");
        // It travels in the composition.
        let back = Composition::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back.disk, c.disk);
    }
    // Boards without [disk] have none, and no driver.
    let profile = load_board(&boards_dir(), "omap5").unwrap();
    let known = Known::builtin(vec!["ticker".into(), "hello".into(), "spinner".into()]);
    let c = plan(&profile, None, &known, "omap5", &image).unwrap();
    assert!(c.disk.is_none());
    assert!(!c.features().iter().any(|f| f == "drv-virtio-blk"));
    let items = c.component_items().unwrap();
    assert!(items.contains("pub fn probe_disk()") && !items.contains("pub type Disk"));
}

#[test]
fn disk_driver_must_be_known() {
    let err = bad("disk_unknown_driver", 23, "disk.driver");
    says(
        &err,
        &[
            "unknown disk driver 'virtio-blok'",
            "the disk drivers there are: virtio-blk",
            "did you mean 'virtio-blk'?",
        ],
    );
}

#[test]
fn disk_is_outside_ram() {
    let err = bad("disk_in_ram", 24, "disk.base");
    says(
        &err,
        &["the disk's window 0x40000000..0x40000200 is inside RAM"],
    );
}

#[test]
fn disk_is_below_4_gib() {
    let err = bad("disk_above_4g", 24, "disk.base");
    says(&err, &["is above 4 GiB"]);
}

#[test]
fn disk_clears_the_uart_and_the_gic() {
    let err = bad("disk_overlaps_uart", 24, "disk.base");
    says(&err, &["overlaps uart.base's 0x9000000..0x9001000"]);
    let err = bad("disk_overlaps_gic", 24, "disk.base");
    says(&err, &["overlaps gic.cpu-interface's 0x8010000..0x8020000"]);
}

#[test]
fn disk_irq_is_an_spi() {
    let err = bad("disk_irq_not_spi", 25, "disk.irq");
    says(&err, &["INTID 27 is not an SPI (32..=1019)", "N + 32"]);
}

#[test]
fn disk_fields_are_checked() {
    let err = bad("disk_unknown_field", 26, "disk");
    says(&err, &["unknown field 'intid'", "driver, base, irq"]);
}

#[test]
fn scenario_disk_is_checked() {
    let s = load_scenario(&fixture("scenarios/disk.toml")).unwrap();
    assert_eq!(
        s.disk.as_deref(),
        Some(Path::new(
            "components/disk-layout/tests/fixtures/lvm.img.gz"
        ))
    );
    let profile = s.load_board(&boards_dir()).unwrap();
    let c = s.plan(&profile, &known(), "test", &image).unwrap();
    assert!(c.disk.is_some());
    assert!(load_scenario(&fixture("scenarios/hello.toml"))
        .unwrap()
        .disk
        .is_none());

    let path = fixture("scenarios/disk_on_omap5.toml");
    let s = load_scenario(&path).unwrap();
    let profile = s.load_board(&boards_dir()).unwrap();
    let err = s.plan(&profile, &known(), "test", &image).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 6, "disk")
    );
    says(&err, &["board omap5 has no [disk]"]);

    let path = fixture("scenarios/disk_u_boot.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 7, "disk")
    );
    says(&err, &["its SD card as its disk"]);
}

#[test]
fn scenario_virtio_mmio_version_is_1_or_2() {
    assert_eq!(
        load_scenario(&fixture("scenarios/disk.toml"))
            .unwrap()
            .virtio_mmio_version,
        None
    );
    let path = fixture("scenarios/virtio_mmio_3.toml");
    let err = load_scenario(&path).unwrap_err();
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 7, "virtio-mmio-version")
    );
    says(&err, &["virtio-mmio version 3 does not exist", "1 (legacy"]);
}

#[test]
fn vm_disks_are_virtio_blk_devices_in_the_abi_slots() {
    let c = plan_file(&fixture("disks.toml"), None).unwrap();
    let slot = |n: u32| {
        (
            abi::GUEST_VIRTIO_BASE + u64::from(n) * abi::GUEST_VIRTIO_SIZE,
            abi::GUEST_VIRTIO_INTID + n,
        )
    };
    let disks = |vm: usize| -> Vec<_> {
        c.vms[vm]
            .devices
            .iter()
            .map(|d| {
                assert_eq!((&*d.kind, d.size), ("virtio-blk", 0x200));
                let disk = d.disk.as_ref().unwrap();
                ((d.base, d.intid), &*disk.source, disk.read_only)
            })
            .collect()
    };
    assert_eq!(
        disks(0),
        [
            ((0x0a00_0000, 48), "lvm:vg0/web", false),
            ((0x0a00_0200, 49), "part:2", false),
            ((0x0a00_0400, 50), "gpt:data", true),
        ]
    );
    assert_eq!((slot(0), slot(2)), ((0x0a00_0000, 48), (0x0a00_0400, 50)));
    let min_sectors: Vec<u64> = c.vms[1]
        .devices
        .iter()
        .map(|d| d.disk.as_ref().unwrap().min_sectors)
        .collect();
    assert_eq!(
        min_sectors,
        [0, 64 << 11],
        "min-size in sectors; absent: any"
    );
    // Each VM numbers its own slots from 0; two read-only users may share.
    assert_eq!(
        disks(1),
        [
            ((0x0a00_0000, 48), "gpt:data", true),
            ((0x0a00_0200, 49), "lvm:vg0/db", false),
        ]
    );
    assert!(c.vms[2].devices.is_empty());
    // The emulated device component is linked, and the disks travel in the
    // composition and the boot table.
    assert!(
        c.features().iter().any(|f| f == "vblk"),
        "{:?}",
        c.features()
    );
    let items = c.component_items().unwrap();
    assert!(
        items.contains("\"virtio-blk\" => Some(vblk::Component::new(setup)"),
        "{items}"
    );
    let back = Composition::from_toml(&c.to_toml()).unwrap();
    assert_eq!(back.vms, c.vms);
    let bytes = back.vm_table();
    assert_eq!(VmTable::decode(&bytes).unwrap().vms, c.vms);
}

#[test]
fn vm_disk_source_is_parsed_as_the_hypervisor_will() {
    let err = bad("disk_source_bad", 56, "vm 'web' disks");
    assert_eq!(err.column, 44, "{err}");
    says(
        &err,
        &[
            "disk #2 source 'lvm:vg0': lvm: needs VG/LV, with exactly one slash",
            "\"lvm:vg0/web\"",
        ],
    );
}

#[test]
fn vm_has_at_most_eight_disks() {
    let err = bad("disks_too_many", 65, "vm 'web' disks");
    says(&err, &["9 disks; a VM has at most 8"]);
}

#[test]
fn vm_names_a_volume_once() {
    let err = bad("disk_twice", 59, "vm 'web' disks");
    says(
        &err,
        &["disk #3 source 'part:02' is disk #1's volume again"],
    );
}

#[test]
fn a_written_volume_is_one_vms_alone() {
    let err = bad("disk_shared_writable", 63, "vm 'backup' disks");
    says(
        &err,
        &[
            "'lvm:vg0/web' is also a disk of vm 'web' (line 52), and vm 'web' may write it",
            "read-only = true",
        ],
    );
}

#[test]
fn vm_disk_fields_are_checked() {
    let err = bad("disk_unknown_key", 56, "vm #1");
    says(
        &err,
        &[
            "unknown field 'read_only'",
            "source, read-only",
            "did you mean 'read-only'?",
        ],
    );
}

#[test]
fn vm_disk_min_size_is_whole_sectors() {
    let err = bad("disk_min_size_odd", 63, "vm 'db' disks");
    says(
        &err,
        &["disk #2 min-size is not a whole number of 512-byte sectors"],
    );
}

#[test]
fn vm_disks_need_a_board_disk() {
    let err = bad("disks_without_disk", 55, "vm 'web' disks");
    says(
        &err,
        &[
            "board disks_without_disk has no [disk]",
            "its VMs cannot have disks",
        ],
    );
    let path = fixture("scenarios/vm_disks_on_omap5.toml");
    let s = load_scenario(&path).unwrap();
    let profile = s.load_board(&boards_dir()).unwrap();
    let err = s.plan(&profile, &known(), "test", &image).unwrap_err();
    println!("{err}");
    assert_eq!(
        (err.file.as_path(), err.line, err.field.as_str()),
        (path.as_path(), 12, "vm 'web' disks")
    );
    says(&err, &["board omap5 has no [disk]"]);
}
