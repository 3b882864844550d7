/* SPDX-License-Identifier: MIT
 *
 * glibc's getopt_long on many command lines, for tests/test_getopt.py to compare with
 * qompr._getopt.
 *
 * Usage: getopt_glibc SHORTOPTS LONGOPTS [continue] < CASES
 *   LONGOPTS: entries "name,has_arg,val" separated by ';' (val: one letter, or empty for an
 *   option of its own, printed as --name).
 *   CASES: one command line a line, its arguments separated by '\x1f' after a leading count.
 * For each case: "opt OPTION ARG" lines, then "error" (getopt returned '?', its message on
 * the same stream just before) or "operands ARG...", then "end" and a '\x1e'.  With
 * "continue", an "error" line stands for each '?' and parsing goes on to the operands.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_OPTS 128
#define MAX_ARGS 64

int main(int argc, char **argv)
{
    static struct option longopts[MAX_OPTS + 1];
    static char line[65536];
    int n = 0;

    if (argc != 3 && argc != 4)
        return 2;
    int go_on = argc == 4 && strcmp(argv[3], "continue") == 0;
    dup2(1, 2); /* messages in order with the results */
    setvbuf(stdout, NULL, _IONBF, 0);
    for (char *entry = strtok(argv[2], ";"); entry && n < MAX_OPTS; entry = strtok(NULL, ";")) {
        char *has_arg = strchr(entry, ',');
        char *val = has_arg ? strchr(has_arg + 1, ',') : NULL;
        if (!val)
            return 2;
        *has_arg++ = '\0';
        *val++ = '\0';
        longopts[n].name = entry;
        longopts[n].has_arg = atoi(has_arg) ? required_argument : no_argument;
        longopts[n].flag = NULL;
        longopts[n].val = *val ? *val : 256 + n;
        n++;
    }
    while (fgets(line, sizeof(line), stdin)) {
        char *args[MAX_ARGS + 2] = {"prog"};
        int count;
        line[strcspn(line, "\n")] = '\0';
        char *field = line;
        char *sep = strchr(field, '\x1f');
        count = atoi(field);
        for (int i = 1; i <= count && i <= MAX_ARGS; i++) {
            field = sep ? sep + 1 : field + strlen(field);
            sep = strchr(field, '\x1f');
            if (sep)
                *sep = '\0';
            args[i] = field;
        }
        args[count + 1] = NULL;
        optind = 0; /* a full re-initialisation, POSIXLY_CORRECT read again */
        int c, failed = 0;
        while ((c = getopt_long(count + 1, args, argv[1], longopts, NULL)) != -1) {
            if (c == '?') {
                if (go_on) {
                    printf("error\n");
                    continue;
                }
                failed = 1;
                break;
            }
            if (c < 256)
                printf("opt -%c %s\n", c, optarg ? optarg : "");
            else
                printf("opt --%s %s\n", longopts[c - 256].name, optarg ? optarg : "");
        }
        if (failed) {
            printf("error\n");
        } else {
            printf("operands");
            for (int i = optind; i <= count; i++)
                printf(" [%s]", args[i]);
            printf("\n");
        }
        printf("end\x1e\n");
    }
    return 0;
}
