-- SPDX-License-Identifier: MIT
-- The reference pages' tables, too wide for a terminal, become tagged
-- paragraphs in the man pages (docs/meson.build): the first column is
-- the tag, the last the text, and each other cell that is not empty
-- follows it in brackets after its column's heading ("(default: 8)").
function Table(tbl)
  local t = pandoc.utils.to_simple_table(tbl)
  local items = {}
  for _, row in ipairs(t.rows) do
    local text = pandoc.List(pandoc.utils.blocks_to_inlines(row[#row]))
    for i = 2, #row - 1 do
      local cell = pandoc.utils.blocks_to_inlines(row[i])
      if #cell > 0 then
        text:extend({ pandoc.Space(), pandoc.Str("(") })
        text:extend(pandoc.utils.blocks_to_inlines(t.headers[i]))
        text:extend({ pandoc.Str(":"), pandoc.Space() })
        text:extend(cell)
        text:insert(pandoc.Str(")"))
      end
    end
    table.insert(items, { pandoc.utils.blocks_to_inlines(row[1]),
                          { { pandoc.Para(text) } } })
  end
  return pandoc.DefinitionList(items)
end
