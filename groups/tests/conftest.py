# the local WeCom sandbox fixture (integrations/wecom/tests/conftest.py), for the join-way and sync tests
from integrations.wecom.tests.conftest import wecom_sandbox  # noqa: F401
