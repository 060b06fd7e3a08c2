"""The WeCom callback, contact ways (渠道活码) and transfers (离职继承/在职转接)."""

urlpatterns: list = []
