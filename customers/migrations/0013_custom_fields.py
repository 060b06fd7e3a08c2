"""Custom fields: the definitions admins make and Customer.custom_fields holding the values (a constant default,
so adding the column rewrites no row). The GIN index is built concurrently in 0014."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0012_task_source_choices'),
    ]

    operations = [
        migrations.CreateModel(
            name='CustomFieldDefinition',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.CharField(help_text='小写字母开头，只含小写字母、数字和下划线；创建后不能修改', max_length=40, unique=True, verbose_name='代码')),
                ('label', models.CharField(max_length=50, verbose_name='名称')),
                ('type', models.CharField(choices=[('text', '文本'), ('number', '数字'), ('date', '日期'), ('choice', '单选'), ('multi_choice', '多选')], max_length=12, verbose_name='类型')),
                ('options', models.JSONField(blank=True, default=list, verbose_name='选项')),
                ('required', models.BooleanField(default=False, verbose_name='必填')),
                ('min_value', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True, verbose_name='最小值')),
                ('max_value', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True, verbose_name='最大值')),
                ('max_length', models.PositiveIntegerField(blank=True, null=True, verbose_name='最大长度')),
                ('active', models.BooleanField(default=True, verbose_name='启用')),
                ('order', models.PositiveIntegerField(default=0, verbose_name='排序')),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), verbose_name='创建时间')),
                ('updated_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), verbose_name='更新时间')),
            ],
            options={
                'verbose_name': '自定义字段',
                'verbose_name_plural': '自定义字段',
                'ordering': ['order', 'id'],
            },
        ),
        migrations.AddField(
            model_name='customer',
            name='custom_fields',
            field=models.JSONField(blank=True, db_default=models.Value({}, output_field=models.JSONField()), default=dict, verbose_name='自定义字段'),
        ),
        migrations.AddConstraint(
            model_name='customfielddefinition',
            constraint=models.CheckConstraint(condition=models.Q(('type__in', ['text', 'number', 'date', 'choice', 'multi_choice'])), name='customfield_type_valid'),
        ),
        migrations.AddConstraint(
            model_name='customfielddefinition',
            constraint=models.CheckConstraint(condition=models.Q(('code__regex', '^[a-z][a-z0-9_]{0,39}$')), name='customfield_code_format'),
        ),
        migrations.AddConstraint(
            model_name='customfielddefinition',
            constraint=models.CheckConstraint(condition=models.Q(('min_value__isnull', True), ('max_value__isnull', True), ('min_value__lte', models.F('max_value')), _connector='OR'), name='customfield_min_not_above_max'),
        ),
    ]
