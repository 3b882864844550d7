/* SPDX-License-Identifier: MIT
 *
 * An LD_PRELOAD library for tests/cli/test_persist.py: replaces ioctl(SG_IO) so that
 * sg_persist and `qompr persist` get the same answers on the same fake device.  It answers
 * INQUIRY and the PR command from files in $SHIM_DIR (status, sense, data, errno; INQUIRY's
 * prefixed "inquiry."), logs each CDB and data-out to $SHIM_DIR/log, and passes every other
 * ioctl to the real one.  Built with: cc -shared -fPIC -o shim.so sgio_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <scsi/sg.h>

static size_t slurp(const char *dir, const char *name, unsigned char *buf, size_t max)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, max, fp);
    fclose(fp);
    return n;
}

static int number(const char *dir, const char *prefix, const char *name)
{
    char file[64];
    unsigned char buf[32] = {0};
    snprintf(file, sizeof(file), "%s%s", prefix, name);
    slurp(dir, file, buf, sizeof(buf) - 1);
    return atoi((char *)buf);
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    const char *dir = getenv("SHIM_DIR");
    if (req != SG_IO || dir == NULL) {
        int (*real)(int, unsigned long, void *) = dlsym(RTLD_NEXT, "ioctl");
        return real(fd, req, arg);
    }
    sg_io_hdr_t *h = arg;
    unsigned char *cdb = h->cmdp;
    char path[4096];
    snprintf(path, sizeof(path), "%s/log", dir);
    FILE *log = fopen(path, "a");
    if (log) {
        for (int i = 0; i < h->cmd_len; ++i)
            fprintf(log, "%02x", cdb[i]);
        if (h->dxfer_direction == SG_DXFER_TO_DEV) {
            fprintf(log, " ");
            for (unsigned i = 0; i < h->dxfer_len; ++i)
                fprintf(log, "%02x", ((unsigned char *)h->dxferp)[i]);
        }
        fprintf(log, " %u\n", h->dxfer_len);
        fclose(log);
    }
    const char *prefix = cdb[0] == 0x12 ? "inquiry." : "";
    int err = number(dir, prefix, "errno");
    if (err) {
        errno = err;
        return -1;
    }
    char file[64];
    static unsigned char data[65536];
    unsigned char sense[252];
    snprintf(file, sizeof(file), "%sdata", prefix);
    size_t dlen = slurp(dir, file, data, sizeof(data));
    snprintf(file, sizeof(file), "%ssense", prefix);
    size_t slen = slurp(dir, file, sense, sizeof(sense));
    int status = number(dir, prefix, "status");
    h->resid = 0;
    if (h->dxfer_direction == SG_DXFER_FROM_DEV) {
        if (dlen > h->dxfer_len)
            dlen = h->dxfer_len;
        memcpy(h->dxferp, data, dlen);
        h->resid = h->dxfer_len - dlen;
    }
    if (slen > h->mx_sb_len)
        slen = h->mx_sb_len;
    memcpy(h->sbp, sense, slen);
    h->sb_len_wr = slen;
    h->status = status;
    h->masked_status = (status >> 1) & 0x7f;
    h->host_status = 0;
    h->driver_status = slen ? 0x08 : 0;
    h->info = (status || slen) ? SG_INFO_CHECK : 0;
    h->duration = 1;
    return 0;
}
