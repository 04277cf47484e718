select cast(ordered_at as date) as day, count(*) as orders, sum(amount) as amount
from {{ ref('stg_orders') }}
group by 1
