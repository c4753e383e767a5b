/* test_serial.c: what a serial port's open failure suggests: the group a device's user needs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../base/serial.h"

Test(serial, permission_denied_names_the_group_and_the_user)
{
	char dev[] = "/tmp/gd-serial-XXXXXX", hint[160], want[160];
	const struct group *dialout = getgrnam("dialout");
	const struct passwd *me = getpwuid(geteuid());
	int fd = mkstemp(dev);

	cr_assert_geq(fd, 0);
	close(fd);
	if (dialout == NULL) {
		unlink(dev);
		cr_skip_test("no dialout group on this machine");
	}
	if (chown(dev, (uid_t)-1, dialout->gr_gid) != 0) {
		unlink(dev);
		cr_skip_test("cannot give %s to the group dialout as this user", dev);
	}
	snprintf(want, sizeof(want), "; add the user to the dialout group: usermod -aG dialout %s",
		 me != NULL ? me->pw_name : "USER");
	cr_expect_str_eq(serial_access_hint(dev, EACCES, hint, sizeof(hint)), want);
	cr_expect_str_eq(serial_access_hint(dev, EPERM, hint, sizeof(hint)), want);
	/* Another failure suggests nothing. */
	cr_expect_str_eq(serial_access_hint(dev, ENOENT, hint, sizeof(hint)), "");
	cr_expect_str_eq(serial_access_hint(dev, EBUSY, hint, sizeof(hint)), "");
	unlink(dev);
	/* A device that is gone: the group Debian gives serial ports. */
	cr_expect(strstr(serial_access_hint(dev, EACCES, hint, sizeof(hint)),
			 "usermod -aG dialout ") != NULL);
}
