//! MODE SELECT and what its parameters do: expected bytes written out from SPC-4 7.5 (mode
//! parameter header, table 451/452; control page, table 457) and SBC-3 6.4 (caching page,
//! table 188; block descriptor, table 180), plus snapshots of the pages.

mod common;

use common::*;
use rstest::rstest;
use scsi::Status;
use store_api::{Capabilities, IoRequest};

fn rig() -> Rig {
    Rig::new(Capabilities::default())
}

/// MODE SELECT(6) (SPC-4 table 93): PF=1, SP as given, PARAMETER LIST LENGTH.
fn mode_select6(sp: bool, len: u8) -> [u8; 6] {
    [0x15, 0x10 | u8::from(sp), 0, 0, len, 0]
}

/// MODE SELECT(10) (SPC-4 table 94).
fn mode_select10(len: u16) -> [u8; 10] {
    let l = len.to_be_bytes();
    [0x55, 0x10, 0, 0, 0, 0, 0, l[0], l[1], 0]
}

/// The control page as MODE SENSE returns it by default (SPC-4 table 457): byte 2 TST
/// 001b (bits 7 to 5, "the logical unit maintains separate task sets for each I_T
/// nexus", table 458) and D_SENSE (bit 2); byte 3 QUEUE ALGORITHM MODIFIER 1 (bits 7 to
/// 4); byte 4 SWP (bit 3).
fn control(d_sense: bool, swp: bool) -> Vec<u8> {
    vec![
        0x0A,
        0x0A,
        0x20 | if d_sense { 0x04 } else { 0 },
        0x10,
        if swp { 0x08 } else { 0 },
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

/// The caching page with WCE.
fn caching(wce: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x08;
    p[1] = 0x12;
    p[2] = if wce { 0x04 } else { 0 };
    p
}

/// A MODE SELECT(6) parameter list: 4-byte header without block descriptors, then `pages`.
fn list6(pages: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![0, 0, 0, 0];
    for p in pages {
        d.extend(p);
    }
    d
}

fn select6(rig: &mut Rig, data: &[u8]) -> (Status, u8, u8, u8) {
    outcome(&rig.run(&mode_select6(false, data.len() as u8), data))
}

#[test]
fn select_changes_what_sense_reports_as_current_only() {
    let mut rig = rig();
    assert_eq!(
        select6(&mut rig, &list6(&[caching(false), control(true, true)])),
        GOOD
    );
    let current = rig.run(&mode_sense6(true, 0, 0x3F, 0, 255), &[]).data_in;
    // Header: MODE DATA LENGTH 3 + 32, MEDIUM TYPE 0, WP (SWP) | DPOFUA, no descriptors.
    let mut want = vec![3 + 32, 0x00, 0x90, 0x00];
    want.extend(caching(false));
    want.extend(control(true, true));
    assert_eq!(&current[..], &want[..]);
    let default = rig.run(&mode_sense6(true, 2, 0x3F, 0, 255), &[]).data_in;
    let mut want = vec![3 + 32, 0x00, 0x90, 0x00];
    want.extend(caching(true));
    want.extend(control(false, false));
    assert_eq!(&default[..], &want[..]);
    let changeable = rig.run(&mode_sense6(true, 1, 0x3F, 0, 255), &[]).data_in;
    let mut want = vec![3 + 32, 0x00, 0x90, 0x00];
    want.extend(caching(true));
    want.extend([0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&changeable[..], &want[..]);
    insta::assert_snapshot!(format!(
        "current:    {}\ndefault:    {}\nchangeable: {}\n",
        hex(&current),
        hex(&default),
        hex(&changeable)
    ));
}

#[test]
fn mode_select10_with_a_block_descriptor() {
    let mut rig = rig();
    // Header (SPC-4 table 452): BLOCK DESCRIPTOR LENGTH 8; short descriptor (SBC-3 table
    // 180): NUMBER OF LOGICAL BLOCKS 0 (unchanged), LOGICAL BLOCK LENGTH 512.
    let mut d = vec![0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00];
    d.extend(caching(false));
    let r = rig.run(&mode_select10(d.len() as u16), &d);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len as usize, d.len());
    let cur = rig.run(&mode_sense6(true, 0, 0x08, 0, 255), &[]).data_in;
    assert_eq!(cur[4 + 2], 0, "WCE cleared");
}

/// Bad parameter lists and CDBs: nothing changes, and the sense says what and where
/// (sense bytes 15..18: SKSV, C/D, field pointer; SPC-4 table 54).
#[rstest]
#[case::sp_set(mode_select6(true, 16).to_vec(), list6(&[control(false, true)]), (0x24, [0xC8, 0, 1]))]
#[case::pf_clear(vec![0x15, 0, 0, 0, 16, 0], list6(&[control(false, true)]), (0x24, [0xCC, 0, 1]))]
#[case::header_cut(mode_select6(false, 3).to_vec(), vec![0, 0, 0], (0x1A, [0, 0, 0]))]
#[case::page_cut(mode_select6(false, 10).to_vec(), list6(&[control(false, true)])[..10].to_vec(), (0x1A, [0, 0, 0]))]
#[case::data_shorter_than_length(mode_select6(false, 40).to_vec(), list6(&[control(false, true)]), (0x1A, [0, 0, 0]))]
#[case::medium_type(mode_select6(false, 16).to_vec(), { let mut d = list6(&[control(false, true)]); d[1] = 1; d }, (0x26, [0x80, 0, 1]))]
#[case::descriptor_length(mode_select6(false, 16).to_vec(), { let mut d = list6(&[control(false, true)]); d[3] = 4; d }, (0x26, [0x80, 0, 3]))]
#[case::descriptor_block_size(mode_select6(false, 12).to_vec(), vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0x00], (0x26, [0x80, 0, 9]))]
#[case::descriptor_capacity(mode_select6(false, 12).to_vec(), vec![0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0x02, 0x00], (0x26, [0x80, 0, 4]))]
#[case::unknown_page(mode_select6(false, 6).to_vec(), vec![0, 0, 0, 0, 0x19, 0], (0x26, [0x80, 0, 4]))]
#[case::wrong_page_length(mode_select6(false, 16).to_vec(), { let mut d = list6(&[control(false, true)]); d[5] = 0x0B; d }, (0x26, [0x80, 0, 5]))]
#[case::not_changeable_tst_shared_task_set(mode_select6(false, 16).to_vec(), { let mut d = list6(&[control(false, true)]); d[6] &= !0xE0; d }, (0x26, [0x80, 0, 6]))]
#[case::not_changeable_qam(mode_select6(false, 16).to_vec(), { let mut d = list6(&[control(false, true)]); d[7] = 0x00; d }, (0x26, [0x80, 0, 7]))]
#[case::not_changeable_caching_rcd(mode_select6(false, 24).to_vec(), { let mut d = list6(&[caching(false)]); d[6] |= 0x01; d }, (0x26, [0x80, 0, 6]))]
#[case::second_page_bad_after_good_first(mode_select6(false, 36).to_vec(), { let mut d = list6(&[control(false, true), caching(true)]); d[17] = 0x11; d }, (0x26, [0x80, 0, 17]))]
fn bad_mode_select(
    #[case] cdb: Vec<u8>,
    #[case] data: Vec<u8>,
    #[case] (asc, field): (u8, [u8; 3]),
) {
    let mut rig = rig();
    let r = rig.run(&cdb, &data);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, asc, 0x00));
    assert_eq!(&r.sense.as_ref().unwrap()[15..18], &field);
    // Nothing changed: SWP still clear, writes still allowed.
    let cur = rig.run(&mode_sense6(true, 0, 0x0A, 0, 255), &[]).data_in;
    assert_eq!(&cur[4..], &control(false, false)[..]);
    assert_eq!(outcome(&rig.run(&cdb10(0x2A, 0, 0, 1), &[0; 512])), GOOD);
}

#[test]
fn empty_parameter_list_changes_nothing() {
    let mut rig = rig();
    assert_eq!(outcome(&rig.run(&mode_select6(false, 0), &[])), GOOD);
    assert_eq!(outcome(&rig.run(&mode_select10(0), &[])), GOOD);
}

#[test]
fn swp_write_protects_the_medium_until_cleared() {
    let mut rig = rig();
    assert_eq!(select6(&mut rig, &list6(&[control(false, true)])), GOOD);
    assert_eq!(outcome(&rig.run(&cdb10(0x28, 0, 0, 1), &[])), GOOD);
    for (cdb, data) in [
        (cdb10(0x2A, 0, 0, 1).to_vec(), vec![1u8; 512]),
        (cdb10(0x41, 0, 0, 1).to_vec(), vec![1u8; 512]),
        (cdb10(0x2E, 0, 0, 1).to_vec(), vec![1u8; 512]),
    ] {
        assert_eq!(
            outcome(&rig.run(&cdb, &data)),
            WRITE_PROTECTED,
            "{cdb:02x?}"
        );
    }
    assert!(
        rig.mem.data[..512].iter().all(|&b| b == 0),
        "nothing written"
    );
    assert_eq!(select6(&mut rig, &list6(&[control(false, false)])), GOOD);
    assert_eq!(outcome(&rig.run(&cdb10(0x2A, 0, 0, 1), &[1; 512])), GOOD);
}

#[test]
fn wce_off_makes_every_write_durable_before_status() {
    let mut rig = rig();
    assert_eq!(select6(&mut rig, &list6(&[caching(false)])), GOOD);
    rig.mem.log.clear();
    assert_eq!(outcome(&rig.run(&cdb10(0x2A, 0, 0, 1), &[1; 512])), GOOD);
    assert!(matches!(
        rig.mem.log[..],
        [IoRequest::Write { fua: true, .. }]
    ));
    rig.mem.log.clear();
    // WRITE SAME(10) of a pattern: the pattern writes, then a flush before GOOD.
    let r = rig.run(&cdb10(0x41, 0, 0, 4), &[7; 512]);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(r.transfer_len, 512);
    assert!(matches!(
        rig.mem.log[..],
        [IoRequest::Write { .. }, IoRequest::Flush]
    ));
    // With the cache back on, no FUA unless asked.
    assert_eq!(select6(&mut rig, &list6(&[caching(true)])), GOOD);
    rig.mem.log.clear();
    assert_eq!(outcome(&rig.run(&cdb10(0x2A, 0, 0, 1), &[1; 512])), GOOD);
    assert!(matches!(
        rig.mem.log[..],
        [IoRequest::Write { fua: false, .. }]
    ));
}

#[test]
fn d_sense_reports_sense_in_descriptor_format() {
    let mut rig = rig();
    assert_eq!(select6(&mut rig, &list6(&[control(true, false)])), GOOD);
    // Answered at once: LBA OUT OF RANGE, descriptor format (SPC-4 table 26), no descriptors.
    let r = rig.run(&cdb10(0x28, 0, 4096, 1), &[]);
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(&r.sense.unwrap()[..], &[0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0]);
    // After storage: a read error.
    rig.mem.fail = Some((store_api::Op::Read, store_api::ErrorKind::Io));
    let r = rig.run(&cdb10(0x28, 0, 0, 1), &[]);
    assert_eq!(&r.sense.unwrap()[..], &[0x72, 0x03, 0x11, 0x00, 0, 0, 0, 0]);
    rig.mem.fail = None;
    // A field pointer: sense-key specific descriptor (SPC-4 table 31).
    let r = rig.run(&[0x28, 0x04, 0, 0, 0, 0, 0, 0, 1, 0], &[]);
    assert_eq!(
        &r.sense.unwrap()[..],
        &[0x72, 0x05, 0x24, 0x00, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0xCA, 0x00, 0x01, 0]
    );
    assert_eq!(select6(&mut rig, &list6(&[control(false, false)])), GOOD);
    let r = rig.run(&cdb10(0x28, 0, 4096, 1), &[]);
    assert_eq!(r.sense.unwrap()[0], 0x70);
}

/// A change made through one nexus is a UNIT ATTENTION, MODE PARAMETERS CHANGED (2Ah/01h,
/// SPC-4 annex D) for every other nexus, once; a MODE SELECT that changes nothing raises none.
#[test]
fn a_change_is_a_unit_attention_for_the_other_nexuses() {
    let port = |name: &str| scsi::InitiatorPort {
        name: name.into(),
        isid: [0x40, 0, 0, 0, 0, 1],
    };
    let mut rig = rig();
    rig.target.open_nexus(1, port("iqn.2026-01.test:a"));
    rig.target.open_nexus(2, port("iqn.2026-01.test:b"));
    let tur = [0u8; 6];
    // Clear the POWER ON conditions of the login.
    rig.run_on(1, 0, &tur, &[]);
    rig.run_on(2, 0, &tur, &[]);
    let same = list6(&[control(false, false)]);
    assert_eq!(
        outcome(&rig.run_on(1, 0, &mode_select6(false, 16), &same)),
        GOOD
    );
    assert_eq!(
        outcome(&rig.run_on(2, 0, &tur, &[])),
        GOOD,
        "nothing changed"
    );
    let swp = list6(&[control(false, true)]);
    assert_eq!(
        outcome(&rig.run_on(1, 0, &mode_select6(false, 16), &swp)),
        GOOD
    );
    assert_eq!(
        outcome(&rig.run_on(1, 0, &tur, &[])),
        GOOD,
        "not for the changer"
    );
    assert_eq!(
        outcome(&rig.run_on(2, 0, &tur, &[])),
        (Status::CheckCondition, 0x06, 0x2A, 0x01)
    );
    assert_eq!(outcome(&rig.run_on(2, 0, &tur, &[])), GOOD, "reported once");
}

/// The saved form of the mode pages as the store keeps it (`<lun>.mode`).
fn saved_form(wce: bool, swp: bool, d_sense: bool) -> Vec<u8> {
    format!(
        "glfs-iscsi-mode 1\nwce {}\nswp {}\nd_sense {}\n",
        u8::from(wce),
        u8::from(swp),
        u8::from(d_sense)
    )
    .into_bytes()
}

/// MODE SENSE(6) of one page with page control `pc` (SPC-4 table 96: 0 current, 3
/// saved): the page, after the 4-byte header.
fn page(rig: &mut Rig, pc: u8, code: u8) -> Vec<u8> {
    let r = rig.run(&mode_sense6(true, pc, code, 0, 255), &[]);
    assert_eq!(outcome(&r), GOOD, "MODE SENSE PC {pc} page {code:02x}h");
    r.data_in[4..].to_vec()
}

/// A LU whose store keeps metadata: the caching and control pages report PS (SPC-4 7.5.7,
/// bit 7 of byte 0), MODE SELECT with SP saves every saveable page's current values, and
/// MODE SENSE with PC 11b reports them; a change without SP leaves them.
#[test]
fn pages_saved_with_sp_are_what_mode_sense_reports_as_saved() {
    let mut rig = rig();
    rig.target.load_mode_pages(0, None).unwrap();
    let mut want = caching(true);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x08), want, "PS on the caching page");
    let mut want = control(false, false);
    want[0] |= 0x80;
    assert_eq!(
        page(&mut rig, 3, 0x0A),
        want,
        "saved = current until a save"
    );

    let data = list6(&[caching(false)]);
    let r = rig.run(&mode_select6(true, data.len() as u8), &data);
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(
        rig.mem.saved_mode_pages.as_deref(),
        Some(&saved_form(false, false, false)[..]),
        "the store was asked to keep them"
    );
    let mut want = caching(false);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 3, 0x08), want);

    // Without SP only the current values change.
    assert_eq!(select6(&mut rig, &list6(&[control(true, false)])), GOOD);
    let mut want = control(false, false);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 3, 0x0A), want);
    let mut want = control(true, false);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x0A), want);
}

/// What the store kept is the LU's current and saved values from the start (a restart).
#[test]
fn saved_pages_are_the_current_ones_after_a_restart() {
    let mut rig = rig();
    rig.target
        .load_mode_pages(0, Some(&saved_form(false, true, false)))
        .unwrap();
    let mut want = caching(false);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x08), want);
    let mut want = control(false, true);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x0A), want);
    // SWP: writes are refused (DATA PROTECT, WRITE PROTECTED 27h/00h).
    let r = rig.run(&cdb10(0x2A, 0, 0, 1), &[0u8; 512]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x07, 0x27, 0x00));
    assert!(rig
        .target
        .load_mode_pages(0, Some(b"glfs-iscsi-mode 1\nwce 2\n"))
        .is_err());
    assert!(rig
        .target
        .load_mode_pages(
            0,
            Some(b"glfs-iscsi-mode 1\nwce 1\nwce 0\nswp 0\nd_sense 0\n")
        )
        .is_err());
}

/// Where nothing can be saved (a memory LU), SP is INVALID FIELD IN CDB (SPC-4 6.9: byte
/// 1, bit 0) and PC 11b SAVING PARAMETERS NOT SUPPORTED (39h/00h), and PS is 0.
#[test]
fn nothing_is_saved_where_the_store_keeps_no_metadata() {
    let mut rig = rig();
    let data = list6(&[caching(false)]);
    let r = rig.run(&mode_select6(true, data.len() as u8), &data);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x24, 0x00));
    assert_eq!(r.sense.as_ref().unwrap()[15..18], [0xC8, 0x00, 0x01]);
    assert_eq!(page(&mut rig, 0, 0x08), caching(true), "unchanged, PS 0");
    let r = rig.run(&mode_sense6(true, 3, 0x08, 0, 255), &[]);
    assert_eq!(outcome(&r), (Status::CheckCondition, 0x05, 0x39, 0x00));
}

/// Another gateway's save, read from the volume, becomes this gateway's saved and current
/// values, and every nexus gets MODE PARAMETERS CHANGED (2Ah/01h); the same form again
/// changes nothing.
#[test]
fn another_gateways_save_becomes_current_with_a_unit_attention() {
    let mut rig = rig();
    rig.target.open_nexus(
        1,
        scsi::InitiatorPort {
            name: "iqn.2026-01.test:a".into(),
            isid: [0x40, 0, 0, 0, 0, 1],
        },
    );
    let tur = [0u8; 6];
    rig.run_on(1, 0, &tur, &[]);
    rig.target.load_mode_pages(0, None).unwrap();
    let other = saved_form(false, false, false);
    assert_eq!(rig.target.refresh_mode_pages(0, &other), Ok(true));
    assert_eq!(
        outcome(&rig.run_on(1, 0, &tur, &[])),
        (Status::CheckCondition, 0x06, 0x2A, 0x01)
    );
    let mut want = caching(false);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x08), want);
    assert_eq!(rig.target.refresh_mode_pages(0, &other), Ok(false));
    // A change made here without SP is not undone by the next refresh of the same form.
    assert_eq!(select6(&mut rig, &list6(&[caching(true)])), GOOD);
    assert_eq!(rig.target.refresh_mode_pages(0, &other), Ok(false));
    let mut want = caching(true);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x08), want);
    assert!(rig.target.refresh_mode_pages(0, b"not ours").is_err());
}

/// PS is reserved in MODE SELECT (SPC-4 7.5.7) and a page sent back as MODE SENSE gave it,
/// PS set, is taken as it is.
#[test]
fn a_page_sent_back_with_ps_set_is_taken() {
    let mut rig = rig();
    rig.target.load_mode_pages(0, None).unwrap();
    let mut swp = control(false, true);
    swp[0] |= 0x80;
    assert_eq!(select6(&mut rig, &list6(&[swp.clone()])), GOOD);
    assert_eq!(page(&mut rig, 0, 0x0A), swp);
}

/// A refresh round that reads the store while this gateway's own save is not written yet
/// finds the form it last knew there: no change, the new values stay current; once
/// written, the new form is no news either.
#[test]
fn a_refresh_before_the_save_is_written_does_not_undo_it() {
    let mut rig = rig();
    let before = saved_form(true, false, false);
    rig.target.load_mode_pages(0, Some(&before)).unwrap();
    let data = list6(&[caching(false)]);
    let step = rig.target.start(scsi::Command {
        nexus: 1,
        lun: 0,
        cdb: bytes::Bytes::copy_from_slice(&mode_select6(true, data.len() as u8)),
        data_out: bytes::Bytes::from(data).into(),
        expected_len: 24,
    });
    let scsi::Start::SaveModePages { lun, pending } = step else {
        panic!("a save: {step:?}")
    };
    assert_eq!(rig.target.refresh_mode_pages(0, &before), Ok(false));
    let mut want = caching(false);
    want[0] |= 0x80;
    assert_eq!(page(&mut rig, 0, 0x08), want, "still off");
    let form = rig.target.mode_pages_metadata(lun as u16).unwrap();
    assert_eq!(form, saved_form(false, false, false));
    rig.target.mode_pages_written(0, &form);
    let r = match pending.finish(Ok(store_api::IoReply::Done)) {
        scsi::Start::Done(r) => r,
        other => panic!("done: {other:?}"),
    };
    assert_eq!(outcome(&r), GOOD);
    assert_eq!(rig.target.refresh_mode_pages(0, &form), Ok(false));
    assert_eq!(page(&mut rig, 0, 0x08), want);
}
