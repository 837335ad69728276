package main

// pullStep is how many more pulls of each path experiment 4 makes at a time
// while its verdict depends on the statistic.
const pullStep = 5

// morePulls says whether experiment 4 pulls once more after done pulls of
// each path. It makes -pulls of each; then, while the median of the
// per-pull ratios (ours ÷ peer) and the ratio of the median times fall on
// different sides of the target (≤ targetMax), it adds pullStep more, up to
// -max-pulls. A `ctr` pull (fetch and unpack) varies by ±25 % from pull to
// pull on a busy machine, far more than the 2 % the target allows, so with
// a handful of pulls the two statistics can disagree about the same data:
// more pulls narrow both medians until they agree, or the row says the
// verdict is undecided.
func (b *bench) morePulls(done int, ours, peer []float64, targetMax float64) bool {
	switch {
	case done < b.pulls:
		return true
	case done >= b.maxPulls:
		b.res.Pulls = done
		return false
	case (done-b.pulls)%pullStep != 0:
		return true
	}
	if agree, perRun, ofMedians := statisticsAgree(ours, peer, targetMax); !agree {
		b.logf("exp 4: after %d pulls the median of per-pull ratios (%s×) and the ratio of medians (%s×) disagree on ≤%s×; %d more",
			done, fmtNum(perRun), fmtNum(ofMedians), fmtNum(targetMax), pullStep)
		return true
	}
	b.res.Pulls = done
	return false
}

// statisticsAgree says whether the median of the per-run ratios ours ÷ peer
// and the ratio of the medians are on the same side of targetMax.
func statisticsAgree(ours, peer []float64, targetMax float64) (bool, float64, float64) {
	r := Row{RatioKind: Relative, TargetMax: targetMax}
	var ratios []float64
	for i := range min(len(ours), len(peer)) {
		ratios = append(ratios, r.ratio(ours[i], peer[i]))
	}
	perRun, ofMedians := median(ratios), r.ratio(median(ours), median(peer))
	return r.meets(perRun) == r.meets(ofMedians), perRun, ofMedians
}
