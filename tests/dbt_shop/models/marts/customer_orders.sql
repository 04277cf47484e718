select c.id, c.region, count(o.id) as orders
from {{ ref('stg_customers') }} c
left join {{ ref('stg_orders') }} o on o.customer_id = c.id
group by 1, 2
