from django.db import migrations, models

# the wordings regulators and the industry's own rules require on product promotion (基金、理财、证券):
# a message that mentions a product carries at least one of them
DISCLOSURES = [
    ("投资有风险", "通用风险提示"), ("入市需谨慎", "证券投资风险提示"), ("股市有风险", "证券投资风险提示"),
    ("基金有风险", "《公开募集证券投资基金销售机构监督管理办法》"), ("投资需谨慎", "通用风险提示"),
    ("投资须谨慎", "通用风险提示"), ("理财非存款", "银行理财／资管产品风险提示"), ("产品有风险", "银行理财／资管产品风险提示"),
    ("过往业绩不代表未来表现", "业绩展示须附"), ("风险提示", "以「风险提示」开头的提示段"),
]


def seed_disclosures(apps, schema_editor):
    ForbiddenPhrase = apps.get_model("sop", "ForbiddenPhrase")
    ForbiddenPhrase.objects.bulk_create([ForbiddenPhrase(kind="disclosure", phrase=p, reason=r) for p, r in DISCLOSURES],
                                        ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('sop', '0003_trading_day_notice_and_demo_sources'),
    ]

    operations = [
        migrations.AddField(
            model_name='forbiddenphrase',
            name='kind',
            field=models.CharField(choices=[('forbidden', '禁用表述'), ('disclosure', '认可的风险提示')], default='forbidden', max_length=10, verbose_name='类型'),
        ),
        migrations.AlterField(
            model_name='forbiddenphrase',
            name='phrase',
            field=models.CharField(max_length=50, unique=True, verbose_name='表述'),
        ),
        migrations.RunPython(seed_disclosures, migrations.RunPython.noop),
    ]
