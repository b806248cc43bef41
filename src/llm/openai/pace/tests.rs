use super::*;

/// `n` requests sent at `at` (reserved without waiting, then started).
fn send(p: &Pace, n: usize, at: Instant) {
    for _ in 0..n {
        p.reserve(at, None);
        p.started(at, None);
    }
}

#[test]
fn a_refusal_paces_at_what_the_server_admitted() {
    let p = Pace::default();
    let t0 = Instant::now();
    // eight sent together; the server admits five and refuses three
    for _ in 0..8 {
        assert!(
            p.reserve(t0, None).is_none(),
            "nothing is paced before a refusal"
        );
        p.started(t0, None);
    }
    let cut = t0 + Duration::from_millis(10);
    for _ in 0..3 {
        p.refused(t0, cut, None);
    }
    // a refusal of a request sent before the cut does not cut again, even later
    p.refused(t0, t0 + Duration::from_secs(2), None);
    let r = p.rate().expect("paced");
    assert!((r - BACKOFF * 5.0).abs() < 1e-9, "{r}");
    // the next requests are spaced 1/r apart
    let a = p.reserve(t0, None).unwrap().at;
    let b = p.reserve(t0, None).unwrap().at;
    assert!((b.duration_since(a).as_secs_f64() - 1.0 / r).abs() < 1e-3);
}

#[test]
fn the_first_estimate_of_a_burst_does_not_hold_the_rate_up() {
    // twelve sent, the first refusal counts eleven admitted; six more refusals of that
    // burst correct it to five: the rate follows, not half of the uncorrected eleven
    let p = Pace::default();
    let t0 = Instant::now();
    send(&p, 12, t0);
    for _ in 0..7 {
        p.refused(
            t0,
            t0 + Duration::from_millis(20),
            Some(Duration::from_millis(980)),
        );
    }
    let r = p.rate().unwrap();
    assert!((r - BACKOFF * 5.0).abs() < 1e-6, "{r}");
}

#[test]
fn near_the_cut_it_grows_slowly_and_far_from_it_fast() {
    let p = Pace::default();
    let t0 = Instant::now();
    send(&p, 10, t0);
    p.refused(t0, t0, None);
    let r0 = p.rate().unwrap();
    p.reserve(t0 + Duration::from_secs(10), None);
    let r1 = p.rate().unwrap();
    assert!(
        r1 > r0 && r1 < r0 * 1.02,
        "slow near the level: {r0} -> {r1}"
    );
    for i in 11..=200 {
        p.reserve(t0 + Duration::from_secs(i), None);
    }
    let r2 = p.rate().unwrap();
    assert!(r2 > r0 * 1.5, "fast once past the band: {r2}");
}

#[test]
fn a_short_retry_after_is_not_a_low_limit() {
    // three answered, one refused within 2 ms, and the server asks to wait 5 ms
    let p = Pace::default();
    let t0 = Instant::now();
    send(&p, 4, t0);
    let now = t0 + Duration::from_millis(2);
    p.refused(t0, now, Some(Duration::from_millis(5)));
    let r = p.rate().unwrap();
    assert!(r > 300.0, "{r}");
    // a window limit: ten admitted, then a wait of 980 ms
    let q = Pace::default();
    send(&q, 11, t0);
    q.refused(
        t0,
        t0 + Duration::from_millis(20),
        Some(Duration::from_millis(980)),
    );
    assert!((q.rate().unwrap() - BACKOFF * 10.0).abs() < 1e-6);
}

#[test]
fn a_refusal_with_nothing_admitted_is_no_rate_signal() {
    // a lone request refused (a shared key, a server refusing at random): paced at 0.2/s
    // this would crawl; it is no estimate of this client's rate
    let p = Pace::default();
    let t0 = Instant::now();
    send(&p, 1, t0);
    p.refused(
        t0,
        t0 + Duration::from_millis(1),
        Some(Duration::from_millis(20)),
    );
    assert_eq!(p.rate(), None);
    // two sent, one refused: a cut; the other refused too: nothing was admitted, undone
    let q = Pace::default();
    send(&q, 2, t0);
    let at = t0 + Duration::from_millis(1);
    q.refused(t0, at, Some(Duration::from_millis(20)));
    assert!(q.rate().is_some());
    q.refused(t0, at, Some(Duration::from_millis(20)));
    assert_eq!(q.rate(), None, "a cut on nothing admitted is undone");
}

/// One second after another, `demand` requests a second (or the paced rate when lower),
/// evenly spread, each `refuse_every`-th refused 1 ms after it was sent (Retry-After 20 ms).
fn refused_at_random(p: &Pace, seconds: u64, demand: f64, refuse_every: usize) -> (usize, usize) {
    let t0 = Instant::now();
    let (mut sent, mut refused) = (0, 0);
    for sec in 0..seconds {
        let n = p.rate().map_or(demand, |r| r.min(demand)).floor().max(1.0) as usize;
        for i in 0..n {
            let at = t0 + Duration::from_secs(sec) + Duration::from_secs_f64(i as f64 / n as f64);
            p.reserve(at, None);
            p.started(at, None);
            sent += 1;
            if sent % refuse_every == 0 {
                refused += 1;
                p.refused(
                    at,
                    at + Duration::from_millis(1),
                    Some(Duration::from_millis(20)),
                );
            }
        }
    }
    (sent, refused)
}

#[test]
fn refusals_at_random_do_not_drive_the_rate_down() {
    // a third refused whatever the rate: the first cut does not lower the refused share, so
    // it is undone and the share is taken for noise; the rate is not cut again
    let p = Pace::default();
    let (sent, refused) = refused_at_random(&p, 60, 20.0, 3);
    assert!(refused >= sent / 4, "{refused} of {sent}");
    assert!(
        p.rate().is_none_or(|r| r >= 19.0),
        "the demand is not held back: {:?}",
        p.rate()
    );
    assert!(
        sent >= 60 * 19,
        "sent at the demand, not a crawl: {sent} in 60 s"
    );
}

#[test]
fn after_noise_a_real_limit_is_still_found() {
    // noise of a tenth learned; then a server admitting 5/s of a demand of 20/s refuses 75%
    let p = Pace::default();
    refused_at_random(&p, 20, 20.0, 10);
    let t0 = Instant::now() + Duration::from_secs(30);
    let mut server: VecDeque<Instant> = VecDeque::new();
    for i in 0..200u32 {
        let at = t0 + Duration::from_millis(u64::from(i) * 50);
        let at = p.reserve(at, None).map_or(at, |s| s.at);
        p.started(at, None);
        trim(&mut server, at);
        if server.len() >= 5 {
            p.refused(at, at + Duration::from_millis(1), None);
        } else {
            server.push_back(at);
        }
    }
    let r = p.rate().expect("paced");
    assert!(r <= 5.0, "{r}");
}

#[test]
fn a_cut_respaces_requests_already_waiting() {
    let p = Pace::default();
    let t0 = Instant::now();
    send(&p, 10, t0);
    let cut = t0 + Duration::from_millis(1);
    p.refused(t0, cut, None);
    let slot = p.reserve(cut, None).unwrap();
    assert!(p.still_valid(slot));
    // another refusal of that burst lowers the estimate: the slot is reserved anew
    p.refused(t0, cut, None);
    assert!(
        !p.still_valid(slot),
        "a slot from before a cut is reserved anew"
    );
}

#[test]
fn the_servers_header_sets_the_rate_before_any_refusal() {
    let p = Pace::default();
    p.limit_per_minute(120.0);
    assert_eq!(p.rate(), Some(BACKOFF * 2.0), "paced from the first answer");
    let t0 = Instant::now();
    send(&p, 50, t0);
    p.refused(t0, t0, None);
    assert!(p.rate().unwrap() <= BACKOFF * 2.0);
    // a lower limit announced later lowers the rate
    p.limit_per_minute(60.0);
    assert_eq!(p.rate(), Some(BACKOFF));
}

/// A server admitting `limit` requests in any one-second window (refusals not counted) and
/// a client with unbounded demand that waits for its pace and for each Retry-After: returns
/// (requests, refusals, admitted) over `seconds`.
fn against_a_sliding_window(limit: usize, seconds: u64) -> (usize, usize, usize) {
    let p = Pace::default();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(seconds);
    let mut window: VecDeque<Instant> = VecDeque::new();
    let (mut sent, mut refused, mut admitted) = (0, 0, 0);
    let mut paused_until = t0;
    // the server's clock runs 0-3 ms behind the client's send (a repeating jitter)
    let jitter = |i: usize| Duration::from_micros((i as u64 * 1_237) % 3_000);
    let mut t = t0;
    // a first burst of eight, before anything is learned
    let mut burst = 8;
    while t < end {
        t = t.max(paused_until);
        let at = if burst > 0 {
            burst -= 1;
            t
        } else {
            p.reserve(t, None).map_or(t, |s| s.at.max(paused_until))
        };
        p.started(at, None);
        sent += 1;
        let arrive = at + jitter(sent);
        trim(&mut window, arrive);
        if window.len() >= limit {
            refused += 1;
            let retry = WINDOW.saturating_sub(arrive.duration_since(window[0]));
            let back = arrive + Duration::from_millis(1);
            p.refused(at, back, Some(retry));
            paused_until = paused_until.max(back + retry);
        } else {
            window.push_back(arrive);
            admitted += 1;
        }
        t = at;
    }
    (sent, refused, admitted)
}

#[test]
fn converges_under_a_sliding_window_limit() {
    for limit in [5usize, 20] {
        let secs = 60;
        let (sent, refused, admitted) = against_a_sliding_window(limit, secs);
        let share = refused as f64 / sent as f64;
        let goodput = admitted as f64 / (secs as f64 * limit as f64);
        eprintln!("{limit}/s: {refused} of {sent} refused, goodput {goodput:.3}");
        assert!(share <= 0.05, "{limit}/s: {refused} of {sent} refused");
        assert!(goodput >= 0.97, "{limit}/s: goodput {goodput:.3}");
    }
}

#[test]
fn a_low_cut_from_a_quiet_window_is_undone_when_refusals_go_on() {
    // two requests 0.9 s apart, the second refused at random: an estimate of about 1/s
    let p = Pace::default();
    let t0 = Instant::now();
    send(&p, 1, t0);
    let t1 = t0 + Duration::from_millis(900);
    send(&p, 1, t1);
    p.refused(t1, t1, Some(Duration::from_millis(20)));
    let low = p.rate().expect("cut");
    assert!(low < 2.0, "{low}");
    // a third of the requests sent at that pace go on being refused: after a few the cut is
    // taken for what it was and undone
    let mut t = t1;
    for i in 1..=9 {
        let slot = p.reserve(t, None);
        t = slot.map_or(t, |s| s.at);
        p.started(t, None);
        if i % 3 == 0 {
            p.refused(t, t, Some(Duration::from_millis(20)));
        }
    }
    assert_eq!(p.rate(), None, "unpaced again");
    assert!(
        t.duration_since(t1) < Duration::from_secs(12),
        "{:?}",
        t.duration_since(t1)
    );
}
