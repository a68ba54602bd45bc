from tests.api.dialects.management.test_management_api import *
def test_dbg(client, runtime, me):
    t = uploaded(client, runtime, me, apk=UNSIGNED_APK)
    print(build_of(client, me, t["start_time"]))
