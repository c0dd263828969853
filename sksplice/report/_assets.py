"""The report's inline style sheet and script (no framework, nothing fetched)."""

from __future__ import annotations

#: Only inline styles, inline scripts and data: images; no request can leave the page.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'")

CSS = """
:root{--bg:#fff;--fg:#1b1b1f;--muted:#5d5d66;--line:#d6d6dc;--card:#f5f5f8;--bar:#3b6fd8;
--accent:#1f5fbf;--warn:#b3261e;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#16161a;--fg:#e8e8ee;--muted:#a4a4b0;
--line:#3a3a44;--card:#212128;--bar:#7aa2ff;--accent:#8ab4ff;--warn:#ff8a80}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
header,main{max-width:1240px;margin:0 auto;padding:12px 16px}
h1{font-size:1.6em;margin:.3em 0}h2{font-size:1.25em;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line);padding-bottom:.2em}h3{font-size:1.05em;margin:.2em 0}
a{color:var(--accent)}
nav ul{display:flex;flex-wrap:wrap;gap:4px 14px;list-style:none;padding:0;margin:.4em 0}
.muted{color:var(--muted)}.warn{color:var(--warn)}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:6px 14px;
margin:.5em 0}.stats div{background:var(--card);padding:6px 10px;border-radius:6px}
.stats dt{font-size:.8em;color:var(--muted)}.stats dd{margin:0;font-weight:600;
overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.name{overflow-wrap:anywhere;min-width:8em}
th button{font:inherit;font-weight:600;color:inherit;background:none;border:0;padding:0;
cursor:pointer}th button::after{content:" \\2195";color:var(--muted)}
th[aria-sort=ascending] button::after{content:" \\2191"}
th[aria-sort=descending] button::after{content:" \\2193"}
button:focus-visible,input:focus-visible,a:focus-visible{outline:2px solid var(--accent);
outline-offset:2px}
input[type=search]{font:inherit;padding:4px 8px;width:min(100%,360px);margin:.3em 0;
background:var(--bg);color:var(--fg);border:1px solid var(--line);border-radius:4px}
.th{display:inline-block;background:var(--card) center/contain no-repeat;border-radius:3px;
vertical-align:middle;flex:none}
.gallery{display:flex;flex-wrap:wrap;gap:4px}
.gallery figure{margin:0;display:flex;flex-direction:column;align-items:center;
max-width:calc(var(--t) + 8px)}
.gallery figcaption{font-size:.72em;color:var(--muted);overflow-wrap:anywhere;
text-align:center;max-width:100%}
ul.names{margin:0;padding-left:1.1em;font-size:.85em;columns:2 14em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.card{background:var(--card);border-radius:8px;padding:10px 12px}
.bar{display:grid;grid-template-columns:minmax(6em,40%) 1fr auto;gap:6px;align-items:center;
font-size:.88em}.bar span.b{display:block;height:.8em;background:var(--bar);border-radius:2px}
.bar .lab{overflow-wrap:anywhere}
.hist{display:block;max-width:640px;width:100%;height:auto}
.hist rect{fill:var(--bar)}.hist text{fill:var(--muted);font-size:11px}
.pager{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin:.4em 0}
.pager button{font:inherit;padding:3px 10px;border:1px solid var(--line);
background:var(--card);color:var(--fg);border-radius:4px;cursor:pointer}
#js-error{display:none;background:var(--warn);color:#fff;padding:6px 10px}
@media (max-width:640px){body{font-size:14px}header,main{padding:8px}
.stats{grid-template-columns:repeat(auto-fill,minmax(140px,1fr))}
.bar{grid-template-columns:minmax(5em,45%) 1fr auto}.hide-narrow{display:none}}
"""

# The error marker comes first, so an error anywhere later is shown and testable.
ERROR_JS = """
window.addEventListener("error",function(e){var m=document.getElementById("js-error");
document.documentElement.setAttribute("data-js-error",String(e.message||e));
if(m){m.style.display="block";m.textContent="Script error: "+(e.message||e);}});
"""

TABLE_JS = r"""
(function(){
"use strict";
function cellKey(td){var s=td.getAttribute("data-sort");
 if(s!==null&&s!==""){return [0,parseFloat(s),""];}
 return [1,0,td.textContent.toLowerCase()];}
function cmp(a,b){if(a[0]!==b[0])return a[0]-b[0];
 if(a[0]===0)return a[1]-b[1];return a[2]<b[2]?-1:a[2]>b[2]?1:0;}
function sortable(table,onSort){
 var ths=table.tHead.rows[0].cells;
 Array.prototype.forEach.call(ths,function(th,col){
  var b=th.querySelector("button");if(!b)return;
  b.addEventListener("click",function(){
   var dir=th.getAttribute("aria-sort")==="descending"?"ascending":"descending";
   Array.prototype.forEach.call(ths,function(o){o.removeAttribute("aria-sort");});
   th.setAttribute("aria-sort",dir);onSort(col,dir==="ascending"?1:-1);});});}
// static tables: sort the rows in place, filter by text
Array.prototype.forEach.call(document.querySelectorAll("table.sortable"),function(t){
 var body=t.tBodies[0];
 sortable(t,function(col,sign){
  var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){return sign*cmp(cellKey(a.cells[col]),cellKey(b.cells[col]));});
  rows.forEach(function(r){body.appendChild(r);});});
 var f=document.querySelector('input[data-filter="'+t.id+'"]');
 if(f){f.addEventListener("input",function(){var q=f.value.toLowerCase();
  Array.prototype.forEach.call(body.rows,function(r){
   r.hidden=q!==""&&r.textContent.toLowerCase().indexOf(q)<0;});});}});
// the per-image table: rows from the embedded JSON, paged
var data=document.getElementById("image-data");if(!data){
 document.documentElement.setAttribute("data-ready","1");return;}
var rows=JSON.parse(data.textContent),table=document.getElementById("images"),
 body=table.tBodies[0],filter=document.getElementById("image-filter"),
 info=document.getElementById("image-info"),prev=document.getElementById("image-prev"),
 next=document.getElementById("image-next"),per=100,page=0,shown=rows,
 size=table.getAttribute("data-thumb");
rows.forEach(function(r,i){r.push(i);r.push((r[0]+" "+r[1]+" "+
 r[4].map(function(c){return c[0];}).join(" ")).toLowerCase());});
function td(text,cls){var c=document.createElement("td");if(cls)c.className=cls;
 c.textContent=text;return c;}
function render(){
 body.textContent="";var start=page*per,end=Math.min(shown.length,start+per);
 for(var i=start;i<end;i++){var r=shown[i],tr=document.createElement("tr"),
  c0=document.createElement("td");
  if(r[5]!==null){var s=document.createElement("span");s.className="th t"+r[5];
   s.style.width=s.style.height=size+"px";s.setAttribute("role","img");
   s.setAttribute("aria-label",r[0]);s.title=r[0];c0.appendChild(s);}
  tr.appendChild(c0);tr.appendChild(td(r[0],"name"));tr.appendChild(td(r[1]));
  var l0=td(String(r[2]),"num");tr.appendChild(l0);
  tr.appendChild(td(r[3]===null?"":r[3].toFixed(3),"num"));
  tr.appendChild(td(r[4].map(function(c){return c[0]+" "+c[1].toFixed(3);}).join(", ")));
  body.appendChild(tr);}
 info.textContent=shown.length?("images "+(start+1)+"\u2013"+end+" of "+shown.length+
  (shown.length<rows.length?" (filtered from "+rows.length+")":"")):"no image matches";
 prev.disabled=page===0;next.disabled=end>=shown.length;}
var keyOf=[function(r){return [1,0,r[0].toLowerCase()];},
 function(r){return [1,0,r[0].toLowerCase()];},function(r){return [1,0,r[1].toLowerCase()];},
 function(r){return [0,r[2],""];},function(r){return r[3]===null?[2,0,""]:[0,r[3],""];},
 function(r){return r[4].length?[0,r[4][0][1],""]:[2,0,""];}];
sortable(table,function(col,sign){shown=shown.slice().sort(function(a,b){
 return sign*cmp(keyOf[col](a),keyOf[col](b))||a[6]-b[6];});page=0;render();});
filter.addEventListener("input",function(){var q=filter.value.toLowerCase();
 shown=q===""?rows:rows.filter(function(r){return r[7].indexOf(q)>=0;});page=0;render();});
prev.addEventListener("click",function(){if(page>0){page--;render();}});
next.addEventListener("click",function(){if((page+1)*per<shown.length){page++;render();}});
render();
document.documentElement.setAttribute("data-ready","1");
})();
"""
