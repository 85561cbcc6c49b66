/*
 * irc-health: does an ircd treat its services as network services?
 *
 *   irc-health [-t SECONDS] [ADDRESS [PORT]]     default 127.0.0.1 6667, 10 s
 *
 * Connects, registers under a random nick, answers PING, waits for 001, then
 * sends `SQUERY NickServ :HELP` (`PRIVMSG NickServ :HELP` where the ircd has
 * no SQUERY). Prints one line and exits:
 *
 *   0  ok:          NickServ answered
 *   2  no-services: the ircd answered that NickServ is no network service
 *                   (408 No such service, "is not a network service", 401)
 *   3  unreachable: no connection, the ircd closed it, or no answer in time
 *   64 usage
 *
 * ADDRESS is numeric (IPv4 or IPv6): the probe is meant to run where no
 * resolver configuration exists, such as an empty root. POSIX sockets only.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ANSWERED 0
#define EXIT_NO_SERVICE 2
#define EXIT_UNREACHABLE 3
#define EXIT_USAGE 64

#define LINE_MAX_BYTES 8192
#define NICK_ATTEMPTS 5

static const char *target_text;
static const char *port_text;
static long long deadline_ms;
static long timeout_s = 10;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(void)
{
    long long left = deadline_ms - now_ms();
    if (left < 0)
        return 0;
    return left > 60000 ? 60000 : (int)left;
}

/* The one line of output, then exit. */
static void finish(int code, const char *kind, const char *fmt, ...)
{
    va_list ap;
    printf("%s: %s port %s: ", kind, target_text, port_text);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    exit(code);
}

static void usage(void)
{
    fprintf(stderr, "usage: irc-health [-t SECONDS] [ADDRESS [PORT]]\n");
    exit(EXIT_USAGE);
}

/* Random enough to avoid a nick in use; an empty root has no /dev/urandom. */
static unsigned long seed_bits(void)
{
    unsigned long bits = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16);
    struct timespec ts;
    int fd;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    bits ^= (unsigned long)ts.tv_nsec * 2654435761UL;
    fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        unsigned long more = 0;
        if (read(fd, &more, sizeof more) == (ssize_t)sizeof more)
            bits ^= more;
        close(fd);
    }
    return bits;
}

static void random_nick(char *out, size_t size, unsigned long *state)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t i;
    out[0] = 'h';
    out[1] = 'p';
    for (i = 2; i < 9 && i + 1 < size; i++) {
        *state = *state * 6364136223846793005UL + 1442695040888963407UL;
        out[i] = alphabet[(*state >> 33) % (sizeof alphabet - 1)];
    }
    out[i] = '\0';
}

static int connect_to(const char *address, unsigned port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, flags, err = 0;
    socklen_t errlen = sizeof err;
    struct pollfd pfd;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        len = sizeof *sin;
    } else if (inet_pton(AF_INET6, address, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        len = sizeof *sin6;
    } else {
        fprintf(stderr, "irc-health: %s is not a numeric IPv4 or IPv6 address\n", address);
        exit(EXIT_USAGE);
    }

    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        finish(EXIT_UNREACHABLE, "unreachable", "socket: %s", strerror(errno));
    flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        finish(EXIT_UNREACHABLE, "unreachable", "fcntl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&ss, len) == 0)
        return fd;
    if (errno != EINPROGRESS)
        finish(EXIT_UNREACHABLE, "unreachable", "connect: %s", strerror(errno));
    pfd.fd = fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    for (;;) {
        int n = poll(&pfd, 1, remaining_ms());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            finish(EXIT_UNREACHABLE, "unreachable", "poll: %s", strerror(errno));
        if (n == 0)
            finish(EXIT_UNREACHABLE, "timeout", "no connection within %ld s", timeout_s);
        break;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
        err = errno;
    if (err != 0)
        finish(EXIT_UNREACHABLE, "unreachable", "connect: %s", strerror(err));
    return fd;
}

static void send_line(int fd, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    int n;
    size_t off = 0;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf - 2)
        return;
    buf[n++] = '\r';
    buf[n++] = '\n';
    while (off < (size_t)n) {
        ssize_t w = write(fd, buf + off, (size_t)n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd;
            pfd.fd = fd;
            pfd.events = POLLOUT;
            pfd.revents = 0;
            if (poll(&pfd, 1, remaining_ms()) <= 0)
                finish(EXIT_UNREACHABLE, "timeout", "could not send within %ld s", timeout_s);
            continue;
        }
        if (w < 0)
            finish(EXIT_UNREACHABLE, "unreachable", "send: %s", strerror(errno));
        off += (size_t)w;
    }
}

/* One parsed IRC line: prefix, command, up to 15 parameters (the last may hold spaces). */
struct message {
    char *prefix;
    char *command;
    char *params[15];
    int nparams;
};

static void parse(char *line, struct message *m)
{
    char *p = line;
    memset(m, 0, sizeof *m);
    if (*p == '@') { /* IRCv3 tags: not needed here */
        p = strchr(p, ' ');
        if (!p)
            return;
        while (*p == ' ')
            p++;
    }
    if (*p == ':') {
        m->prefix = ++p;
        p = strchr(p, ' ');
        if (!p)
            return;
        *p++ = '\0';
        while (*p == ' ')
            p++;
    }
    m->command = p;
    p = strchr(p, ' ');
    while (p && m->nparams < 15) {
        *p++ = '\0';
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (*p == ':') {
            m->params[m->nparams++] = p + 1;
            break;
        }
        m->params[m->nparams++] = p;
        p = strchr(p, ' ');
    }
}

static const char *param(const struct message *m, int i)
{
    return i < m->nparams ? m->params[i] : "";
}

/* The nick part of a prefix equals `nick`, case-insensitively. */
static int from(const struct message *m, const char *nick)
{
    size_t n = strlen(nick);
    return m->prefix && strncasecmp(m->prefix, nick, n) == 0 &&
           (m->prefix[n] == '!' || m->prefix[n] == '@' || m->prefix[n] == '\0');
}

/* Printable text only, so the one line of output stays one line. */
static const char *clean(const char *text)
{
    static char out[200];
    size_t i = 0;
    for (; *text && i + 1 < sizeof out; text++) {
        unsigned char c = (unsigned char)*text;
        if (c >= 0x20 && c != 0x7f)
            out[i++] = (char)c;
    }
    out[i] = '\0';
    return out;
}

int main(int argc, char **argv)
{
    char nick[16];
    char buf[LINE_MAX_BYTES];
    size_t have = 0;
    int fd, opt, registered = 0, asked_privmsg = 0, attempts = 1, discarding = 0;
    unsigned long state;
    long port;
    char *end;

    while ((opt = getopt(argc, argv, "t:h")) != -1) {
        if (opt == 't') {
            timeout_s = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || timeout_s < 1 || timeout_s > 600)
                usage();
        } else {
            usage();
        }
    }
    if (argc - optind > 2)
        usage();
    target_text = optind < argc ? argv[optind] : "127.0.0.1";
    port_text = optind + 1 < argc ? argv[optind + 1] : "6667";
    port = strtol(port_text, &end, 10);
    if (*port_text == '\0' || *end != '\0' || port < 1 || port > 65535)
        usage();

    signal(SIGPIPE, SIG_IGN);
    deadline_ms = now_ms() + timeout_s * 1000;
    state = seed_bits();
    random_nick(nick, sizeof nick, &state);

    fd = connect_to(target_text, (unsigned)port);
    send_line(fd, "NICK %s", nick);
    send_line(fd, "USER health 0 * :baton irc-health");

    for (;;) {
        struct pollfd pfd;
        ssize_t r;
        char *nl;
        int n;

        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        n = poll(&pfd, 1, remaining_ms());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            finish(EXIT_UNREACHABLE, "unreachable", "poll: %s", strerror(errno));
        if (n == 0)
            finish(EXIT_UNREACHABLE, "timeout",
                   registered ? "registered as %s, but no answer about NickServ within %ld s"
                              : "not registered (%s) within %ld s",
                   nick, timeout_s);
        r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0)
            finish(EXIT_UNREACHABLE, "unreachable", "read: %s", strerror(errno));
        if (r == 0)
            finish(EXIT_UNREACHABLE, "unreachable", "the ircd closed the connection %s",
                   registered ? "after registration" : "before registration");
        have += (size_t)r;
        buf[have] = '\0';

        while ((nl = strchr(buf, '\n')) != NULL) {
            struct message m;
            size_t used = (size_t)(nl - buf) + 1;
            *nl = '\0';
            if (nl > buf && nl[-1] == '\r')
                nl[-1] = '\0';
            if (discarding) {
                discarding = 0;
            } else {
                parse(buf, &m);
                if (m.command == NULL || *m.command == '\0') {
                    /* empty line */
                } else if (strcmp(m.command, "PING") == 0) {
                    send_line(fd, "PONG :%s", param(&m, 0));
                } else if (strcmp(m.command, "ERROR") == 0) {
                    finish(EXIT_UNREACHABLE, "unreachable", "the ircd closed the link: %s",
                           clean(param(&m, 0)));
                } else if (!registered && (strcmp(m.command, "433") == 0 ||
                                            strcmp(m.command, "432") == 0)) {
                    if (++attempts > NICK_ATTEMPTS)
                        finish(EXIT_UNREACHABLE, "unreachable", "no nick accepted after %d tries",
                               NICK_ATTEMPTS);
                    random_nick(nick, sizeof nick, &state);
                    send_line(fd, "NICK %s", nick);
                } else if (strcmp(m.command, "001") == 0) {
                    registered = 1;
                    send_line(fd, "SQUERY NickServ :HELP");
                } else if (registered && strcmp(m.command, "NOTICE") == 0 &&
                           from(&m, "NickServ")) {
                    send_line(fd, "QUIT :irc-health");
                    finish(EXIT_ANSWERED, "ok", "NickServ answered: %s", clean(param(&m, 1)));
                } else if (registered && strcmp(m.command, "421") == 0 &&
                           strcasecmp(param(&m, 1), "SQUERY") == 0 && !asked_privmsg) {
                    asked_privmsg = 1;
                    send_line(fd, "PRIVMSG NickServ :HELP");
                } else if (registered &&
                           (strcmp(m.command, "408") == 0 || strcmp(m.command, "401") == 0) &&
                           strcasecmp(param(&m, 1), "NickServ") == 0) {
                    send_line(fd, "QUIT :irc-health");
                    finish(EXIT_NO_SERVICE, "no-services", "%s NickServ :%s", m.command,
                           clean(param(&m, 2)));
                } else if (registered && strcmp(m.command, "NOTICE") == 0 &&
                           strstr(param(&m, 1), "is not a network service") != NULL) {
                    send_line(fd, "QUIT :irc-health");
                    finish(EXIT_NO_SERVICE, "no-services", "%s", clean(param(&m, 1)));
                }
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            buf[have] = '\0';
        }
        if (have == sizeof buf - 1) {
            /* A line longer than the buffer: skip it up to its newline. */
            have = 0;
            discarding = 1;
        }
    }
}
