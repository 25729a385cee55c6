/*
 * clients_test — per-client limits without sockets: one record per key,
 * requests in flight, the prompt-byte bucket (refill, burst, a prompt
 * larger than the burst), idle clients forgotten, the table shrinking
 * after a flood of keys.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "clients.h"

int main(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits sl = {.max_queue = 16, .max_running = 4};
    CHECK(moe_sched_init(&s, 1, &sl, &err) == 0);
    moe_clients *c;
    const moe_clients_limits bad = {.max_in_flight = 1, .prompt_bytes_per_s = 100, .prompt_burst = 0};
    CHECK(moe_clients_init(&c, s, &bad, &err) != 0);
    const moe_clients_limits lim = {.max_in_flight = 2, .prompt_bytes_per_s = 1000, .prompt_burst = 1000};
    CHECK(moe_clients_init(&c, s, &lim, &err) == 0);

    double t = 100;
    const char *which;
    moe_client *a = moe_clients_get(c, "addr:127.0.0.2", t), *b = moe_clients_get(c, "addr:127.0.0.1", t);
    CHECK(a != b && moe_clients_get(c, "addr:127.0.0.2", t) == a && moe_clients_count(c) == 2);
    CHECK(moe_client_flow(a) != moe_client_flow(b));
    /* in flight: the third is refused, b is not affected */
    CHECK(moe_clients_admit(c, a, 10, t, &which, &err) == 0 && moe_clients_admit(c, a, 10, t, &which, &err) == 0);
    CHECK(moe_clients_admit(c, a, 10, t, &which, &err) != 0);
    CHECK_CONTAINS(err.msg, "in flight");
    CHECK(which && !strcmp(which, "in_flight"));
    CHECK(moe_clients_admit(c, b, 10, t, &which, &err) == 0 && moe_client_in_flight(b) == 1);
    moe_clients_done(c, a);
    moe_clients_done(c, a);
    /* bytes: 1000 of burst, 20 used; 990 more is too much now, fine 0.02 s later */
    CHECK(moe_clients_admit(c, a, 990, t, &which, &err) != 0);
    CHECK_CONTAINS(err.msg, "prompt bytes a second");
    CHECK(which && !strcmp(which, "prompt_bytes"));
    CHECK(moe_clients_admit(c, a, 990, t + 0.02, &which, &err) == 0);
    moe_clients_done(c, a);
    /* a prompt above the burst passes on a full bucket, then the client waits */
    CHECK(moe_clients_admit(c, a, 5000, t + 10, &which, &err) == 0);
    moe_clients_done(c, a);
    CHECK(moe_clients_admit(c, a, 1, t + 11, &which, &err) != 0);
    CHECK(moe_clients_admit(c, a, 1, t + 14.1, &which, &err) == 0);
    moe_clients_done(c, a);
    CHECK(moe_clients_refused(c) == 3);
    /* idle with a full bucket: forgotten; b still has a request in flight */
    moe_clients_tick(c, t + 20);
    CHECK(moe_clients_count(c) == 1);
    moe_clients_done(c, b);
    /* a flood of keys is forgotten as a whole */
    for (int i = 0; i < 5000; i++) {
        char key[32];
        snprintf(key, sizeof key, "addr:10.0.%d.%d", i / 256, i % 256);
        moe_clients_get(c, key, t + 30);
    }
    CHECK(moe_clients_count(c) == 5001);
    moe_clients_tick(c, t + 40);
    CHECK(moe_clients_count(c) == 0);
    moe_clients_free(c);
    moe_sched_free(s);
    printf("clients: in flight, prompt bytes a second, idle clients forgotten\n");
    return check_summary("clients_test");
}
