/* The ceiling for bench/ivr_media.py: the same paced prompt packets, sent by a plain C loop.
 *
 *     _rtp_pacer SECONDS PORT...
 *
 * One UDP socket sends a 172-byte PCMU packet (12-octet RTP header, 160 octets of audio) to
 * every 127.0.0.1:PORT each 20 ms, on an absolute grid (a late tick is not caught up), for
 * SECONDS. It is what any media server on this machine could do at best: no interpreter, one
 * sendto per packet, so what is left of the interval spread is the machine's (the scheduler,
 * the hypervisor, loopback delivery), not the platform's.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec += 1;
    }
}

static int before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SECONDS PORT...\n", argv[0]);
        return 2;
    }
    int frames = (int)(atof(argv[1]) * 50);
    int legs = argc - 2;
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in *to = calloc((size_t)legs, sizeof *to);
    uint16_t *sequence = calloc((size_t)legs, sizeof *sequence);
    if (sock < 0 || !to || !sequence) {
        perror("setup");
        return 1;
    }
    for (int i = 0; i < legs; i++) {
        to[i].sin_family = AF_INET;
        to[i].sin_port = htons((uint16_t)atoi(argv[i + 2]));
        to[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    unsigned char packet[172];
    memset(packet, 0xff, sizeof packet); /* PCMU silence */
    struct timespec due, now;
    clock_gettime(CLOCK_MONOTONIC, &due);
    for (int frame = 0; frame < frames; frame++) {
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
        for (int i = 0; i < legs; i++) {
            uint32_t timestamp = htonl((uint32_t)frame * 160u), ssrc = htonl(1000u + (uint32_t)i);
            uint16_t seq = htons(sequence[i]++);
            packet[0] = 0x80;
            packet[1] = frame == 0 ? 0x80 : 0x00;
            memcpy(packet + 2, &seq, 2);
            memcpy(packet + 4, &timestamp, 4);
            memcpy(packet + 8, &ssrc, 4);
            sendto(sock, packet, sizeof packet, 0, (struct sockaddr *)&to[i], sizeof to[i]);
        }
        add_ns(&due, 20000000L);
        clock_gettime(CLOCK_MONOTONIC, &now);
        while (before(&due, &now)) /* skip ticks whose time is gone, as the platform does */
            add_ns(&due, 20000000L);
    }
    return 0;
}
