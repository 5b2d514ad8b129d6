//! Serial number arithmetic (RFC 1982, 32-bit) for CmdSN, StatSN, DataSN and R2TSN.

/// `a < b` in serial number arithmetic.
pub fn lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// `a <= b` in serial number arithmetic.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// True if `sn` lies in the command window `[exp, max]` (RFC 7143 4.2.2.1).
pub fn in_window(sn: u32, exp: u32, max: u32) -> bool {
    le(exp, sn) && le(sn, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(1, 2, true)]
    #[case(2, 1, false)]
    #[case(5, 5, false)]
    #[case(0xffff_fffe, 1, true)]
    #[case(1, 0xffff_fffe, false)]
    fn serial_less_than(#[case] a: u32, #[case] b: u32, #[case] expected: bool) {
        assert_eq!(lt(a, b), expected);
    }

    #[rstest]
    #[case(10, 10, 19, true)]
    #[case(19, 10, 19, true)]
    #[case(20, 10, 19, false)]
    #[case(9, 10, 19, false)]
    #[case(0, 0xffff_fff0, 0x0000_000f, true)]
    // A closed window: MaxCmdSN = ExpCmdSN - 1.
    #[case(10, 10, 9, false)]
    fn command_window(#[case] sn: u32, #[case] exp: u32, #[case] max: u32, #[case] ok: bool) {
        assert_eq!(in_window(sn, exp, max), ok);
    }
}
