"""URLs of core's 用户与权限 pages for tests/test_scope.py: admins only, so every role the test walks gets 404."""

PAGES_WITHOUT_OBJECTS = {"staff:list", "staff:create"}

OBJECT_KWARGS = {
    # a staff account (the Shanghai advisor): the pages and actions about it are for admins alone
    "user_id": lambda objs: objs["customer"].advisor_id,
}
