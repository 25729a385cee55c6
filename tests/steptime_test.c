/*
 * steptime_test — the expected time of a lockstep step (worker/steptime.h),
 * which the watchdog is told before a long step.
 */
#include <math.h>

#include "check.h"
#include "steptime.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(a) + fabs(b)) + 1e-15; }

int main(void)
{
    moe_steptime st;
    moe_steptime_init(&st, 0.01);
    /* nothing timed: the first guess per token, at least one token */
    CHECK(near(moe_steptime_expect(&st, 100), 1.0));
    CHECK(near(moe_steptime_expect(&st, 0), 0.01));
    CHECK(near(moe_steptime_expect(&st, -5), 0.01));

    /* a 64-token step (class 64..127) took 0.32 s: 5 ms a token */
    moe_steptime_add(&st, 64, 0.32);
    CHECK(near(moe_steptime_expect(&st, 64), 0.32));
    CHECK(near(moe_steptime_expect(&st, 100), 0.5));
    /* larger steps: the smaller class's cost a token (errs long) */
    CHECK(near(moe_steptime_expect(&st, 1024), 1024 * 0.005));
    /* smaller steps: no longer than the largest step of the timed class */
    CHECK(near(moe_steptime_expect(&st, 1), 0.005 * 128));
    CHECK(near(moe_steptime_expect(&st, 40), 0.005 * 128));

    /* a decode step (class 1) is timed: small steps use it, large ones the
     * nearest smaller class, which is now 64's */
    moe_steptime_add(&st, 1, 0.02);
    CHECK(near(moe_steptime_expect(&st, 1), 0.02));
    CHECK(near(moe_steptime_expect(&st, 40), 40 * 0.02));
    CHECK(near(moe_steptime_expect(&st, 4096), 4096 * 0.005));

    /* up at once, down slowly */
    moe_steptime_add(&st, 64, 0.64); /* 10 ms a token */
    CHECK(near(moe_steptime_expect(&st, 64), 0.64));
    moe_steptime_add(&st, 64, 0.0); /* a fast one pulls it down by a tenth of the gap */
    CHECK(near(moe_steptime_expect(&st, 64), 64 * (0.9 * 0.01 + 0.1 * (1e-9 / 64))));
    CHECK(moe_steptime_expect(&st, 64) > 0.5);

    /* bad figures are ignored; huge counts stay finite */
    const double before = moe_steptime_expect(&st, 64);
    moe_steptime_add(&st, 0, 5.0);
    moe_steptime_add(&st, 64, -1.0);
    moe_steptime_add(&st, 64, NAN);
    CHECK(near(moe_steptime_expect(&st, 64), before));
    CHECK(isfinite(moe_steptime_expect(&st, INT64_MAX)));
    moe_steptime_add(&st, INT64_MAX, 1.0);
    CHECK(moe_steptime_expect(&st, INT64_MAX) > 0);
    return check_summary("steptime_test");
}
